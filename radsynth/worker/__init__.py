"""Long-lived worker process speaking JSON lines (``python -m radsynth.worker``), and the host side that drives it.

Models load once, on the first request, and stay loaded; the host (Slicer, the CLI) never imports torch and never
goes down with the worker. Volumes travel as file paths (uncompressed NRRD, written and read in milliseconds).

Protocol, one JSON object per line.
  host → worker: ``{"id", "op": <a registered operation>|"ping"|"shutdown", "params": {...}}``,
                 ``{"op": "cancel", "id"}``
  worker → host: ``{"id", "event": "progress", "fraction", "stage", "eta_s"}``,
                 ``{"id", "event": "result", "report", "out", "out_mask"}``,
                 ``{"id", "event": "error", "type": <exception class name>, "message"}``
Run params: ``image``, ``mask`` (paths; no mask for place), ``out``, ``out_mask`` (paths to write), ``model_dir``,
``device``, and the operation's options as the registry declares them (``radsynth.pipelines.registry``), its
volume options as paths. ``out_mask`` in the result is null when the operation makes no mask (a whole-volume
generation). Only events go to stdout; everything else to stderr.

Modules: ``protocol`` (shared helpers), ``server`` (the worker process), ``client`` (``WorkerClient``,
``run_in_worker``), ``runner`` (``Runner``: the same call in this process or in the worker).
"""

from .client import WorkerClient, result_from_event, run_in_worker, shared_client
from .protocol import eta_seconds, write_scratch
from .runner import Runner

__all__ = ["Runner", "WorkerClient", "eta_seconds", "result_from_event", "run_in_worker", "shared_client",
           "write_scratch"]
