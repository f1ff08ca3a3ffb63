"""The result of a tumour operation; torch-free so that hosts (Slicer, the CLI's worker client) can use it."""

from __future__ import annotations

import dataclasses
from typing import Optional

from .volume import Volume


@dataclasses.dataclass
class TumorResult:
    operation: str
    volume: Volume
    mask: Volume
    features: Optional[list[tuple[str, float, float]]]
    timings: dict[str, float]
    models: dict[str, str]
    settings: dict

    def report(self) -> dict:
        out = {"operation": self.operation, "synthetic": True, "models": self.models, "settings": self.settings,
               "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
               "mask_voxels": int(self.mask.array.sum())}
        if self.features is not None:
            out["features"] = [{"name": n, "target": t, "achieved": a} for n, t, a in self.features]
        return out

    @classmethod
    def from_report(cls, report: dict, volume: Volume, mask: Volume) -> "TumorResult":
        """Rebuild a result from ``report()`` output and the written volumes (the worker's reply)."""
        rows = report.get("features")
        return cls(operation=report["operation"], volume=volume, mask=mask,
                   features=None if rows is None else [(r["name"], r["target"], r["achieved"]) for r in rows],
                   timings=dict(report.get("timings_s") or {}), models=dict(report.get("models") or {}),
                   settings=dict(report.get("settings") or {}))
