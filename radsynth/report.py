"""Run reports: software versions, one operation's record, and strict JSON writing (one place for both)."""

from __future__ import annotations

import json
import math
import sys
import platform
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

import numpy as np

from . import __version__

DISTRIBUTIONS = ("torch", "monai", "SimpleITK", "numpy", "scipy", "pyradiomics-bhklab", "safetensors")


def software_versions() -> dict[str, str]:
    versions = {"radsynth": __version__, "python": sys.version.split()[0], "platform": platform.platform()}
    for dist in DISTRIBUTIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "not installed"
    return versions


def operation_report(op: str, result: Any, inputs: dict[str, Any], outputs: dict[str, Any], mode: str,
                     **extra: Any) -> dict:
    """Everything needed to reproduce and judge one operation; the pipeline's own report is nested as-is.

    ``steps``/``seed``/``eta`` at the top level are what the run used (from its settings), not what was asked.
    """
    report = result.report()
    settings = report.get("settings") or {}
    # a two-step operation (move, resize) keeps each step's settings under its name: the last step's are used
    nested = [v for v in settings.values() if isinstance(v, dict)]
    used = {}
    for k in ("steps", "seed", "eta", "guidance"):
        found = [s[k] for s in [settings, *reversed(nested)] if k in s]
        if found:
            used[k] = found[0]
    return {"operation": op, "inputs": inputs, "outputs": outputs, **used, "mode": mode, **extra, "result": report}


def feature_summary(features) -> Optional[dict[str, float]]:
    """Median and worst relative error |achieved − target| / max(|target|, 1e-6) over the conditioning features."""
    if not features:
        return None
    errs = np.array([abs(a - t) / max(abs(t), 1e-6) for _, t, a in features if a is not None and t is not None])
    if errs.size == 0:
        return None
    return {"features": int(errs.size), "median_rel_error": float(np.median(errs)),
            "max_rel_error": float(errs.max()), "within_20pct": int((errs <= 0.2).sum())}


def strict(value: Any) -> Any:
    """JSON-ready and strict: NaN/inf (an undefined correlation) → null, numpy scalars → numbers, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    return str(value)


def dumps(data: Any) -> str:
    return json.dumps(strict(data), indent=1, allow_nan=False) + "\n"


def write_json(data: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(data), encoding="utf-8")
    return path
