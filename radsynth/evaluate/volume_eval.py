"""``radsynth evaluate generate-volume``: whole-volume latent diffusion models (the demo volume-ldm or a MAISI-family
model) against the real sample CTs.

``variants`` volumes are generated (seeds 0…), unguided or following a segmentation. The real CTs (lung1, lung2) are
resampled onto the generated spacing first (Gaussian anti-aliasing, then linear), so that the comparison is not
one of resolution: a 4 mm volume has no 0.7 mm texture to match. Measured:

* HU histogram distance per region (soft tissue of the body, aerated lung: each volume's own ``radsynth.anatomy``
  masks), generated volumes pooled against the real ones pooled (seed 003 compared such histograms by eye);
* Fréchet radiomics distance and bMMD² on 30 mm region patches of every other axial slice;
* MS-SSIM diversity across the variants (axial slices compared slice by slice, whole range);
* 2.5D FID (axial / coronal / sagittal slices) when Inception weights are given;
* organ adherence when a segmentation is given: the median HU inside each segment (resampled onto the generated
  grid) against the organ's real range (``radsynth.evaluate.organs``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..sample_data import sample_path
from ..volume import Volume, read_volume
from . import distribution as D
from .organs import organ_adherence
from .roi_features import REGIONS, region_features, regions
from .sections import Evaluation, fid_section, hu_section, radiomics_section

Log = Callable[[str], None]
REAL_CASES = ("lung1", "lung2")


def resample_to(volume: Volume, spacing: Sequence[float]) -> Volume:
    """``volume`` on a grid of ``spacing`` (x, y, z mm) over the same extent: Gaussian anti-aliasing (σ = 0.4 × the
    new spacing where it is coarser), then linear interpolation; air outside."""
    img = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    old = np.asarray(img.GetSpacing())
    new = np.asarray(spacing, dtype=float)
    sigma = [float(0.4 * n) if n > o * 1.01 else 0.0 for o, n in zip(old, new)]
    if max(sigma) > 0:
        img = sitk.SmoothingRecursiveGaussian(img, [max(s, 1e-3) for s in sigma])
    size = [max(int(round(s * o / n)), 1) for s, o, n in zip(img.GetSize(), old, new)]
    out = sitk.Resample(img, size, sitk.Transform(), sitk.sitkLinear, img.GetOrigin(), tuple(new), img.GetDirection(),
                        -1024.0, sitk.sitkFloat32)
    return Volume(sitk.GetArrayFromImage(out), out.GetOrigin(), out.GetSpacing(), out.GetDirection())


def _slices_with_body(masks: Mapping[str, np.ndarray], every: int = 2) -> list[int]:
    body = np.zeros_like(next(iter(masks.values())))
    for m in masks.values():
        body |= m
    filled = np.flatnonzero(body.any(axis=(1, 2)))
    return [int(k) for k in filled[::every]] if filled.size else []


class _Set:
    """HU values and patch features per region, and (HU, body) pairs for FID, over a set of volumes."""

    def __init__(self) -> None:
        self.hu: dict[str, list] = {r: [] for r in REGIONS}
        self.features: dict[str, list] = {r: [] for r in REGIONS}
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []

    def add(self, volume: Volume, per_slice: int, seed: int) -> None:
        masks = regions(volume)
        for r in REGIONS:
            self.hu[r].append(volume.array[masks[r]])
        for r, table in region_features(volume, _slices_with_body(masks), per_slice, masks, seed).items():
            self.features[r].append(table)
        self.pairs.append((np.asarray(volume.array), masks["soft_tissue"] | masks["lung"]))


def segment_masks(segmentation: Volume, names: Mapping[int, str], on: Volume) -> dict[str, np.ndarray]:
    """{name: bool mask on ``on``'s grid} of each named label of ``segmentation`` (nearest neighbour)."""
    arr = sitk.GetArrayFromImage(sitk.Resample(segmentation.to_sitk(), on.to_sitk(), sitk.Transform(),
                                               sitk.sitkNearestNeighbor, 0))
    # label 0 is what is outside every segment, not a segment
    return {name: arr == int(value) for value, name in names.items() if int(value) != 0 and (arr == int(value)).any()}


def evaluate_volume(model, *, variants: int = 3, steps: Optional[int] = None, rois_per_slice: int = 4,
                    segmentation: Optional[Volume] = None, segment_names: Optional[Mapping[int, str]] = None,
                    fid_weights: Optional[Path] = None, log: Log = lambda s: None) -> Evaluation:
    from ..pipelines.generate.whole_volume import generate
    from ..pipelines.inpaint import labels as L

    card = model.card
    names = dict(segment_names) if segment_names else {lab.value: lab.name for lab in L.LABELS}
    generated, seconds = [], []
    for v in range(variants):
        t0 = time.perf_counter()
        res = generate(model, seed=v, steps=steps, segmentation=segmentation,
                       segment_names=names if segmentation is not None else None)
        seconds.append(time.perf_counter() - t0)
        generated.append(res.volume)
        log(f"variant {v + 1}/{variants}: {'x'.join(map(str, res.volume.shape[::-1]))} voxels in {seconds[-1]:.1f} s")
    spacing = generated[0].spacing
    real_set, gen_set = _Set(), _Set()
    for case in REAL_CASES:
        real = resample_to(read_volume(sample_path(case, "image")), spacing)
        real_set.add(real, rois_per_slice * 2, seed=0)
        log(f"real {case} resampled to {'x'.join(f'{s:g}' for s in spacing)} mm and measured")
    for v, vol in enumerate(generated):
        gen_set.add(vol, rois_per_slice, seed=v)
    report: dict[str, Any] = {
        "protocol": {"variants": variants, "seeds": list(range(variants)), "steps": steps or
                     (card.get("sampling") or {}).get("default_steps"), "real": list(REAL_CASES),
                     "real_resampled_to_mm": list(spacing), "follows_segmentation": segmentation is not None,
                     "rois_per_slice": rois_per_slice},
        "model": {k: card.get(k) for k in ("name", "kind", "version", "demo")},
        "seconds_per_volume": float(np.mean(seconds)),
        "hu_histogram": hu_section(real_set.hu, gen_set.hu),
        "radiomics": radiomics_section(real_set.features, gen_set.features),
        "fid": fid_section(fid_weights, real_set.pairs, gen_set.pairs, log),
    }
    if variants >= 2 and len({v.shape for v in generated}) == 1:
        report["diversity_ms_ssim"] = D.ms_ssim_diversity(np.stack([v.array for v in generated]), D.HU_RANGE)
    else:
        report["diversity_ms_ssim"] = {"note": "needs at least two variants of one size"}
    if segmentation is not None:
        report["organ_adherence"] = [organ_adherence(vol.array, segment_masks(segmentation, names, vol))
                                     for vol in generated]
        shares = [a["adherence"] for a in report["organ_adherence"] if a["adherence"] is not None]
        report["organ_adherence_mean"] = float(np.mean(shares)) if shares else None
    return Evaluation(report, lambda path: _montage(real, generated, segmentation, names, path))


def _centred_on(real: Volume, grid: Volume) -> Volume:
    """``real`` resampled onto ``grid`` with the two volumes' centres put together (a translation only)."""
    def centre(v: Volume) -> np.ndarray:
        return v.index_to_physical(((np.asarray(v.shape) - 1) / 2.0)[None])[0]
    shift = sitk.TranslationTransform(3, tuple(float(x) for x in centre(real) - centre(grid)))
    out = sitk.Resample(real.to_sitk(), grid.to_sitk(), shift, sitk.sitkLinear, -1024.0, sitk.sitkFloat32)
    return grid.with_array(sitk.GetArrayFromImage(out).astype(np.float32))


def _montage(real: Volume, generated: list[Volume], segmentation: Optional[Volume], names: Mapping[int, str],
             path: Path) -> Path:
    """lung2 resampled to the generated spacing (top) and generated seed 0 (bottom), on one grid; axial/coronal/
    sagittal through the segmentation's or the volume's centre."""
    from .montage import MontageBlock, montage_blocks

    first = generated[0]
    if segmentation is not None:
        masks = segment_masks(segmentation, names, first)
        mask = np.zeros(first.shape, np.uint8)
        for m in masks.values():
            mask |= m
    else:
        mask = np.zeros(first.shape, np.uint8)
        c = np.asarray(first.shape) // 2
        mask[tuple(slice(x - 2, x + 3) for x in c)] = 1
    extent = float(max(np.asarray(first.shape) * np.asarray(first.spacing)[::-1]))
    return montage_blocks([MontageBlock(_centred_on(real, first), first.with_array(first.array.astype(np.float32)),
                                        first.label_like(mask), "real lung2 at the model's spacing (top) vs "
                                        "generated, seed 0 (bottom)")], path, fov_mm=extent)
