"""The result of any operation; torch-free so that hosts (Slicer, the CLI's worker client) can use it.

Only ``volume`` is always there: a whole-volume generation has no mask, a removal has no feature table.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from .volume import Volume

#: table rows are plain dicts of JSON values; ``features`` rows are {"name", "target", "achieved"}
Table = list[dict[str, Any]]
FEATURES = "features"


@dataclasses.dataclass
class Result:
    operation: str
    volume: Volume
    mask: Optional[Volume] = None
    tables: dict[str, Table] = dataclasses.field(default_factory=dict)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    models: dict[str, str] = dataclasses.field(default_factory=dict)      # model name -> version
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    model_cards: dict[str, dict] = dataclasses.field(default_factory=dict)  # filled by the runner
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)         # what the transport adds (worker pid)

    @property
    def features(self) -> Optional[list[tuple[str, float, float]]]:
        """The target-vs-achieved feature rows as (name, target, achieved), when the operation measured any."""
        rows = self.tables.get(FEATURES)
        return None if rows is None else [(r["name"], r["target"], r["achieved"]) for r in rows]

    def report(self) -> dict:
        out: dict[str, Any] = {"operation": self.operation, "synthetic": True, "models": self.models,
                               "settings": self.settings,
                               "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                               "warnings": list(self.warnings), "tables": self.tables}
        if self.mask is not None:
            out["mask_voxels"] = int((self.mask.array > 0).sum())
        if self.model_cards:
            out["model_cards"] = self.model_cards
        return {**self.extra, **out}

    @classmethod
    def from_report(cls, report: dict, volume: Volume, mask: Optional[Volume] = None) -> "Result":
        """Rebuild a result from ``report()`` output and the written volumes (the worker's reply)."""
        own = ("operation", "synthetic", "models", "settings", "timings_s", "warnings", "tables", "mask_voxels",
               "model_cards")
        return cls(operation=report["operation"], volume=volume, mask=mask, tables=dict(report.get("tables") or {}),
                   timings=dict(report.get("timings_s") or {}), models=dict(report.get("models") or {}),
                   settings=dict(report.get("settings") or {}), warnings=list(report.get("warnings") or []),
                   model_cards=dict(report.get("model_cards") or {}),
                   extra={k: v for k, v in report.items() if k not in own})


def feature_table(rows: list[tuple[str, float, Optional[float]]]) -> Table:
    return [{"name": n, "target": t, "achieved": a} for n, t, a in rows]
