"""What both ends of the worker pipe share: the operations, ETA arithmetic, scratch files, error mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import SimpleITK as sitk

from .. import errors
from ..errors import RadSynthError, WorkerError
from ..volume import Volume

#: classifier-free guidance of synthesis. The null branch renders healthy tissue (it is also the removal path); at 1
#: the demo model's output still leans to it (mean-intensity requests of -150/0/+150 HU on a 20 mm lung site gave
#: -391/-380/-473 HU), at 3 it follows them (-180/-104/-57 HU). It doubles the network evaluations per step.
DEFAULT_GUIDANCE = 3.0

#: what each operation takes besides the image and the tumour mask (every one also takes steps, seed, eta)
OPTIONS = {"remove": (), "synthesize": ("target", "overrides", "guidance"),
           "retexture": ("target", "overrides", "guidance"),
           "place": ("target", "overrides", "guidance", "point_lps", "painted", "shape_mode", "shape_features",
                     "organ"),
           "move": ("shift_lps", "others"), "resize": ("volume_ml", "scale")}
COMMON_OPTIONS = ("steps", "seed", "eta")
#: options that are volumes (``others``: a list of them); they travel as scratch files
VOLUME_OPTIONS = ("painted", "organ", "others")
RUN_OPS = tuple(OPTIONS)
#: operations on an existing tumour; ``place`` makes a new one and takes no mask
MASK_OPS = ("remove", "synthesize", "retexture", "move", "resize")


def check_op(op: str) -> None:
    if op not in RUN_OPS:
        raise WorkerError(f"Unknown operation {op!r}; expected one of {', '.join(RUN_OPS)}.")


def options_for(op: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values ``op`` takes, unset (None) ones left out: callers may hold more than one operation needs."""
    check_op(op)
    return {k: values[k] for k in OPTIONS[op] + COMMON_OPTIONS if values.get(k) is not None}


def check_options(op: str, options: dict[str, Any]) -> None:
    check_op(op)
    unknown = sorted(set(options) - set(OPTIONS[op] + COMMON_OPTIONS))
    if unknown:
        raise WorkerError(f"The operation {op} does not take {', '.join(unknown)}.")


def eta_seconds(elapsed: float, fraction: float) -> Optional[float]:
    """Remaining time extrapolated from the elapsed time; None until there is enough progress to extrapolate."""
    if fraction < 0.02 or elapsed <= 0:
        return None
    return max(0.0, elapsed / fraction * (1.0 - fraction))


def write_scratch(volume: Volume, path: str | Path) -> None:
    """Write without compression: these files live for seconds, and gzip would cost ~0.5 s per CT volume."""
    sitk.WriteImage(volume.to_sitk(), str(path), useCompression=False)


def error_from_event(event: dict) -> RadSynthError:
    """The RadSynthError subclass named by an error event; anything else (a bug) becomes a WorkerError."""
    cls = getattr(errors, str(event.get("type")), None)
    message = event.get("message") or "no message"
    if isinstance(cls, type) and issubclass(cls, RadSynthError):
        return cls(message)
    return WorkerError(f"The background worker failed ({event.get('type')}: {message}).")
