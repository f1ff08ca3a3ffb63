"""Report sections the three generation evaluations share: HU histogram distances per region, the Fréchet radiomics
distance and bMMD² on region-patch features, and the FID block (or why it is missing)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from ..volume import Volume
from . import distribution as D
from .roi_features import FRECHET_FEATURES

Log = Callable[[str], None]


@dataclasses.dataclass
class Evaluation:
    """An evaluation's report and the function that draws its PNG montage to a path (written together)."""
    report: dict
    draw: Callable[[Path], Path]


def crop(volume: Volume, box: Sequence[slice]) -> Volume:
    """``volume[box]`` ((k, j, i) slices with non-negative starts) as a Volume in the same place."""
    start = np.array([[b.indices(n)[0] for b, n in zip(box, volume.shape)]])
    origin = tuple(float(v) for v in volume.index_to_physical(start)[0])
    return Volume(np.ascontiguousarray(volume.array[tuple(box)]), origin, tuple(volume.spacing),
                  tuple(volume.direction), dict(volume.metadata))


def crop_slices(volume: Volume, start: int, stop: int) -> Volume:
    """Slices ``start:stop`` of ``volume`` as a Volume in the same place."""
    return crop(volume, (slice(start, stop), slice(None), slice(None)))


def hu_section(real: Mapping[str, Sequence[np.ndarray]], generated: Mapping[str, Sequence[np.ndarray]]) -> dict:
    """{region: hu_distance} of pooled voxel values (lists of HU arrays per region)."""
    out = {}
    for region in real:
        a = np.concatenate([np.ravel(v) for v in real[region]]) if real[region] else np.zeros(0)
        b = np.concatenate([np.ravel(v) for v in generated.get(region, [])]) if generated.get(region) else np.zeros(0)
        try:
            out[region] = D.hu_distance(a, b)
        except D.MetricError as exc:
            out[region] = {"note": str(exc)}
    return out


def radiomics_section(real: Mapping[str, Sequence[np.ndarray]], generated: Mapping[str, Sequence[np.ndarray]],
                      ) -> dict:
    """{region: {frechet, bmmd2, samples}} on pooled patch-feature tables, z-scored on the real set."""
    out = {}
    for region in real:
        a = np.concatenate(list(real[region])) if real[region] else np.zeros((0, len(FRECHET_FEATURES)))
        g = list(generated.get(region, []))
        b = np.concatenate(g) if g else np.zeros((0, len(FRECHET_FEATURES)))
        row: dict = {"samples_real": int(len(a)), "samples_generated": int(len(b))}
        try:
            row["frechet"] = D.frechet_distance(a, b)
        except D.MetricError as exc:
            row["frechet"], row["note"] = None, str(exc)
        if len(a) >= 2 and len(b) >= 2:
            za, zb = D.zscore_on(a, a, b)
            row["bmmd2"] = D.batch_mmd2(za, zb)
        out[region] = row
    return {"features": list(FRECHET_FEATURES), "z_scored_on": "real patches", "regions": out}


def fid_section(weights: Optional[Path], real: Sequence[tuple[np.ndarray, np.ndarray]],
                generated: Sequence[tuple[np.ndarray, np.ndarray]], log: Log = lambda s: None,
                planes: Sequence[str] = ("axial", "coronal", "sagittal")) -> dict:
    """FID-Ax/Cor/Sag from (HU volume, body mask) pairs, or {"fid": None, "note": why not}."""
    from .fid import fid_planes, fid_unavailable, load_inception

    why = fid_unavailable(weights)
    if why:
        log(why)
        return {"computed": False, "note": why}
    net = load_inception(Path(weights))
    return {"computed": True, "weights": str(weights), "planes": fid_planes(net, real, generated, planes=planes)}


def flat(values: Mapping[str, dict], key: str) -> dict[str, float]:
    """{region: values[region][key]} where present (summary lines)."""
    return {r: v[key] for r, v in values.items() if isinstance(v, dict) and v.get(key) is not None}
