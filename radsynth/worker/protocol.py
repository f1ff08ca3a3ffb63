"""What both ends of the worker pipe share: ETA arithmetic, scratch files, error mapping.

The operations, their options and which of them are volumes (sent as scratch files) are the registry's
(``radsynth.pipelines.registry``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import SimpleITK as sitk

from .. import errors
from ..errors import RadSynthError, WorkerError
from ..volume import Volume


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
