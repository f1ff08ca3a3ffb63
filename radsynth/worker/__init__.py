"""Long-lived worker process speaking JSON lines (``python -m radsynth.worker``), and the host side that drives it.

Models load once, on the first request, and stay loaded; the host (Slicer, the CLI) never imports torch and never
goes down with the worker. Volumes travel as file paths (uncompressed NRRD, written and read in milliseconds).

Protocol, one JSON object per line.
  host → worker: ``{"id", "op": <a protocol.RUN_OPS entry>|"ping"|"shutdown", "params": {...}}``,
                 ``{"op": "cancel", "id"}``
  worker → host: ``{"id", "event": "progress", "fraction", "stage", "eta_s"}``,
                 ``{"id", "event": "result", "report", "out", "out_mask"}``,
                 ``{"id", "event": "error", "type": <exception class name>, "message"}``
Run params: ``image``, ``mask`` (paths; no mask for place), ``out``, ``out_mask`` (paths to write), ``model_dir``,
``device``, and the operation's options (``protocol.OPTIONS``: e.g. ``target``, ``point_lps``, ``steps``, ``seed``),
volume options (``painted``, ``organ``, ``others``) as paths. Only events go to stdout; everything else to stderr.

Modules: ``protocol`` (shared helpers), ``server`` (the worker process), ``client`` (``WorkerClient``,
``run_in_worker``), ``runner`` (``TumorRunner``: the same call in this process or in the worker).
"""

from .client import WorkerClient, WorkerResult, run_in_worker, shared_client
from .protocol import RUN_OPS, eta_seconds, write_scratch
from .runner import TumorRunner

__all__ = ["RUN_OPS", "TumorRunner", "WorkerClient", "WorkerResult", "eta_seconds", "run_in_worker",
           "shared_client", "write_scratch"]
