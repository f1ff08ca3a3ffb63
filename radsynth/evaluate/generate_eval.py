"""``radsynth evaluate generate``: slice growth (ASCII) from seed slices of the sample CTs, with and without IC-Net,
against the real slices at the same positions (seed 000 §6.2.3, Tables 7–8, adapted: see docs/ctgenerate-slices.md).

Per case (lung1, lung2): ``slices`` new slices grown up from a seed slice in the chest, ``variants`` seeds, IC-Net on
and off. Measured:

* continuity (:func:`radsynth.evaluate.distribution.continuity`) of seed + grown slices and of the real slices at the
  same positions, both on the model grid (the output is upsampled from the model's 64² plane, so on the CT's own grid
  the seed → first grown slice jump would mostly measure the change of resolution): whole range and the soft-tissue
  window IC-Net calibrates (card window);
* HU histogram distance per region (soft tissue, lung) and the Fréchet radiomics distance and bMMD² on region patches,
  grown slices vs the real slices at their positions;
* MS-SSIM diversity across variants (model grid);
* FID-Ax/Cor/Sag when Inception weights are given;
* optionally the fast sampler against the thesis's predictor–corrector (IC-Net on, one variant).

The demo slice model was trained on every slice of both sample CTs: these are in-sample numbers, which say whether
the software measures what it should and how the demo model behaves, not how a real model generalises.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..sample_data import sample_path
from ..volume import Volume, read_volume
from . import distribution as D
from .roi_features import REGIONS, region_features, regions
from .sections import Evaluation, crop_slices, fid_section, hu_section, radiomics_section

Log = Callable[[str], None]
CASES = ("lung1", "lung2")
#: seed slice per case: mid-chest, lungs and mediastinum in the slice (both CTs have 5 mm slices)
SEED_SLICES = {"lung1": 24, "lung2": 28}
CONFIGS = ("icnet_on", "icnet_off")
CONTINUITY_KEYS = ("voxel_jump_hu", "stripe_hu", "grown_only_voxel_jump_hu", "grown_only_stripe_hu")


def _model_grid(volume: Volume, card: dict) -> Volume:
    """``volume`` resampled in-plane onto the score model's grid (what the model sees), slice spacing kept."""
    from ..pipelines.generate.slices import to_model_plane

    grid = card["grid"]
    size, mm = int(grid["size"]), float(grid["spacing_mm"])
    planes = to_model_plane(np.asarray(volume.array, np.float32), volume.spacing, size, mm)
    return Volume(planes, (0.0, 0.0, 0.0), (mm, mm, float(volume.spacing[2])), (1, 0, 0, 0, 1, 0, 0, 0, 1))


def _continuity(model_grid: Volume, window: Optional[tuple[float, float]], grown: Sequence[int]) -> dict:
    """Continuity of seed + grown slices, and of the grown slices alone (``grown_only``: the seed → first grown
    step left out) when there are at least three."""
    from ..anatomy import body_mask
    body = body_mask(model_grid)
    out = D.continuity(model_grid.array, body, window)
    if len(grown) >= 3:
        g = list(grown)
        only = D.continuity(model_grid.array[g], body[g], window)
        out.update({"grown_only_voxel_jump_hu": only["voxel_jump_hu"], "grown_only_stripe_hu": only["stripe_hu"]})
    return out


class _Pool:
    """Voxels and patch features per region, pooled over cases and variants."""

    def __init__(self) -> None:
        self.hu: dict[str, list] = {r: [] for r in REGIONS}
        self.features: dict[str, list] = {r: [] for r in REGIONS}

    def add(self, volume: Volume, slices: Sequence[int], per_slice: int, seed: int) -> None:
        masks = regions(volume)
        for r in REGIONS:
            self.hu[r].append(volume.array[list(slices)][masks[r][list(slices)]])
        for r, table in region_features(volume, slices, per_slice, masks, seed).items():
            self.features[r].append(table)


def _grow(ct: Volume, score, icnet, seed_slice: int, slices: int, seed: int, sampler: str = "fast",
          steps: Optional[int] = None):
    from ..pipelines.generate.slices import generate_slices
    res = generate_slices(ct, score, icnet, seed_slice=seed_slice, direction="up", slices=slices, seed=seed,
                          sampler=sampler, steps=steps)
    k0 = int(res.settings["output_first_slice_in_input"])
    used = set(res.settings["seed_slices_used"])
    grown = [k for k in range(res.volume.shape[0]) if k0 + k not in used]
    return res, k0, grown


def evaluate_generate(score, icnet, *, cases: Sequence[str] = CASES, slices: int = 3, variants: int = 2,
                      rois_per_slice: int = 8, compare_samplers: bool = False, pc_slices: int = 1,
                      pc_steps: int = 1000, steps: Optional[int] = None, fid_weights: Optional[Path] = None,
                      log: Log = lambda s: None) -> Evaluation:
    """The report (see the module doc) and the montage drawer (real vs grown, IC-Net on, per case)."""
    card = dict(score.card)
    ic_window = tuple(float(v) for v in icnet.card["window"])
    windows = {"whole": None, f"window_{ic_window[0]:g}_{ic_window[1]:g}": ic_window}
    real_pool, pools = _Pool(), {c: _Pool() for c in CONFIGS}
    continuity: dict[str, dict] = {}
    diversity: dict[str, dict] = {c: {} for c in CONFIGS}
    fid_real, fid_gen = [], {c: [] for c in CONFIGS}
    blocks, timings = [], {c: [] for c in CONFIGS}
    for case in cases:
        ct = read_volume(sample_path(case, "image"))
        seed_slice = SEED_SLICES.get(case, ct.shape[0] // 2)
        case_cont: dict[str, Any] = {}
        grown_mg: dict[str, list] = {c: [] for c in CONFIGS}
        for config in CONFIGS:
            for v in range(variants):
                t0 = time.perf_counter()
                res, k0, grown = _grow(ct, score, icnet if config == "icnet_on" else None, seed_slice, slices, v,
                                       steps=steps)
                timings[config].append((time.perf_counter() - t0) / max(len(grown), 1))
                log(f"{case} {config} variant {v}: {len(grown)} slices grown from slice {seed_slice}")
                real = crop_slices(ct, k0, k0 + res.volume.shape[0])
                gen = res.volume
                if config == "icnet_on" and v == 0:
                    real_pool.add(real, grown, 2 * rois_per_slice, seed=0)
                    mg = _model_grid(real, card)
                    case_cont["real"] = {w: _continuity(mg, win, grown) for w, win in windows.items()}
                    fid_real.append((real.array, regions(real)["soft_tissue"] | regions(real)["lung"]))
                    blocks.append((case, real, gen, grown))
                pools[config].add(gen, grown, rois_per_slice, seed=v)
                mg = _model_grid(gen, card)
                grown_mg[config].append(mg.array[grown])
                cont = {w: _continuity(mg, win, grown) for w, win in windows.items()}
                case_cont.setdefault(config, []).append(cont)
                masks = regions(gen)
                fid_gen[config].append((gen.array, masks["soft_tissue"] | masks["lung"]))
        for config in CONFIGS:
            runs = case_cont[config]
            keys = [k for k in CONTINUITY_KEYS if k in runs[0][next(iter(windows))]]
            case_cont[config] = {w: {k: float(np.mean([r[w][k] for r in runs])) for k in keys} for w in windows}
            for w in windows:
                case_cont[config][w].update(D.relative(case_cont[config][w], case_cont["real"][w], keys))
            if variants >= 2:
                diversity[config][case] = {w: D.ms_ssim_diversity(np.stack(grown_mg[config]),
                                                                  win or D.HU_RANGE) for w, win in windows.items()}
        continuity[case] = case_cont
    report: dict[str, Any] = {
        "protocol": {"cases": list(cases), "seed_slices": {c: SEED_SLICES.get(c) for c in cases},
                     "direction": "up", "slices_grown": slices, "variants": variants,
                     "rois_per_slice": rois_per_slice,
                     "sampler": f"fast, {steps or 'default'} steps (see seconds_per_slice for the cost)",
                     "in_sample": "the demo slice model trained on every slice of both sample CTs",
                     "continuity_grid": f"model grid {card['grid']['size']}² at {card['grid']['spacing_mm']} mm"},
        "continuity": continuity,
        "hu_histogram": {c: hu_section(real_pool.hu, pools[c].hu) for c in CONFIGS},
        "radiomics": {c: radiomics_section(real_pool.features, pools[c].features) for c in CONFIGS},
        "diversity_ms_ssim": diversity if variants >= 2 else {"note": "needs at least two variants"},
        "seconds_per_slice": {c: float(np.mean(t)) for c, t in timings.items()},
        "fid": {c: fid_section(fid_weights, fid_real, fid_gen[c], log if c == CONFIGS[0] else (lambda s: None))
                for c in CONFIGS},
        "models": {card.get("name", "slice-score"): card.get("version"),
                   icnet.card.get("name", "icnet"): icnet.card.get("version")},
    }
    if compare_samplers:
        report["samplers"] = compare_fast_pc(score, icnet, cases, pc_slices, pc_steps, rois_per_slice, log)
    return Evaluation(report, lambda path: _montage(blocks, path))


def compare_fast_pc(score, icnet, cases: Sequence[str], slices: int, pc_steps: int, rois_per_slice: int,
                    log: Log) -> dict[str, Any]:
    """Fast sampler vs predictor–corrector (``pc_steps`` levels), IC-Net on, one variant, ``slices`` grown per
    case: Fréchet radiomics and HU histogram distances to the real slices, MAE inside the body, seconds per slice."""
    out: dict[str, Any] = {}
    real_pool = _Pool()
    pools = {"fast": _Pool(), "pc": _Pool()}
    mae: dict[str, list] = {"fast": [], "pc": []}
    secs: dict[str, list] = {"fast": [], "pc": []}
    evals: dict[str, int] = {}
    for case in cases:
        ct = read_volume(sample_path(case, "image"))
        seed_slice = SEED_SLICES.get(case, ct.shape[0] // 2)
        for sampler in ("fast", "pc"):
            t0 = time.perf_counter()
            res, k0, grown = _grow(ct, score, icnet, seed_slice, slices, 0, sampler,
                                   pc_steps if sampler == "pc" else None)
            secs[sampler].append((time.perf_counter() - t0) / max(len(grown), 1))
            evals[sampler] = int(res.settings["evaluations_per_slice"])
            log(f"{case} sampler {sampler}: {len(grown)} slices in {secs[sampler][-1]:.1f} s/slice")
            real = crop_slices(ct, k0, k0 + res.volume.shape[0])
            if sampler == "fast":
                real_pool.add(real, grown, 2 * rois_per_slice, seed=0)
            pools[sampler].add(res.volume, grown, rois_per_slice, seed=0)
            body = regions(real)
            inside = body["soft_tissue"] | body["lung"]
            g = np.asarray(res.volume.array, np.float64)[grown]
            r = np.asarray(real.array, np.float64)[grown]
            mae[sampler].append(float(np.abs(g - r)[inside[grown]].mean()))
    for sampler in ("fast", "pc"):
        out[sampler] = {"evaluations_per_slice": evals[sampler], "seconds_per_slice": float(np.mean(secs[sampler])),
                        "mae_in_body_hu": float(np.mean(mae[sampler])),
                        "hu_histogram": hu_section(real_pool.hu, pools[sampler].hu),
                        "radiomics": radiomics_section(real_pool.features, pools[sampler].features)}
    out["protocol"] = {"cases": list(cases), "slices_grown": slices, "pc_steps": pc_steps, "icnet": "on",
                       "variants": 1}
    return out


def _montage(blocks, out: Path) -> Path:
    from .montage import MontageBlock, montage_blocks

    mb = []
    for case, real, gen, grown in blocks:
        mask = np.zeros(gen.shape, np.uint8)
        for k in grown:
            mask[k, gen.shape[1] // 4: 3 * gen.shape[1] // 4, gen.shape[2] // 4: 3 * gen.shape[2] // 4] = 1
        mb.append(MontageBlock(real, gen, gen.label_like(mask), f"{case}: real slices (top) vs grown with IC-Net "
                                                              "(bottom); box = grown slices"))
    return montage_blocks(mb, out, fov_mm=None)
