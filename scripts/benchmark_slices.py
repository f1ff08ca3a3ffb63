#!/usr/bin/env python
"""Seconds per slice of ``generate slices`` with the bundled demo model: the fast sampler (DPM-Solver++(2M), 39
evaluations) against the thesis's predictor-corrector (1000 levels, 1999 evaluations), IC-Net on, seeded from the
lung1 sample CT; ``generate organs`` with the demo organ model on lung1's automatic map (fast, guidance 1 and 2),
and how well the generated slices follow the map (mean HU inside the map's lungs vs its body, the real CT's
beside); plus a coronal montage of a grown volume (PNG) to look at.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmark_slices.py [--fast-slices 8] [--pc-slices 1]
        [--organ-slices 8] [--png out.png]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from radsynth import models
from radsynth.pipelines.generate.slices import generate_slices
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast-slices", type=int, default=8)
    ap.add_argument("--pc-slices", type=int, default=1)
    ap.add_argument("--pc-steps", type=int, default=1000)
    ap.add_argument("--seed-slice", type=int, default=20)
    ap.add_argument("--organ-slices", type=int, default=8, help="0: skip generate organs")
    ap.add_argument("--png", default=None, help="write a coronal montage of the fast run here")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    ct = read_volume(sample_path("lung1", "image"))
    t0 = time.perf_counter()
    score = models.load("slice-score", device="cpu")
    icnet = models.load("icnet", device="cpu")
    load_s = time.perf_counter() - t0
    rows = {"threads": torch.get_num_threads(), "load_s": round(load_s, 2)}
    fast = None
    if args.fast_slices:
        fast = generate_slices(ct, score, icnet, seed_slice=args.seed_slice, direction="both",
                               slices=args.fast_slices)
        rows["fast"] = {"evaluations_per_slice": fast.settings["evaluations_per_slice"],
                        "s_per_slice": round(fast.timings["per_slice"], 3), "slices": args.fast_slices}
    if args.pc_slices:
        pc = generate_slices(ct, score, icnet, seed_slice=args.seed_slice, slices=args.pc_slices, sampler="pc",
                             steps=args.pc_steps)
        rows["pc"] = {"evaluations_per_slice": pc.settings["evaluations_per_slice"],
                      "s_per_slice": round(pc.timings["per_slice"], 3), "slices": args.pc_slices}
    if args.organ_slices:
        rows["organs"] = organs(ct, icnet, args.organ_slices, args.seed_slice)
    print(json.dumps(rows, indent=2))
    if args.png and fast is not None:
        montage(ct, fast.volume, fast.settings, args.png)


def organs(ct, icnet, slices: int, start: int) -> dict:
    """Seconds per slice of ``generate organs`` and how the generated slices follow the map: mean HU inside the
    map's lungs and body (the real CT's beside), seeded by the real slice below the start (guidance 1, 2, 0) and
    from air; and the right lung unticked (its region's mean HU, which should move towards the body's)."""
    from radsynth.pipelines.generate.organs import generate_organs
    from radsynth.pipelines.inpaint import labels
    from radsynth.pipelines.inpaint.auto_map import auto_map

    label_map = auto_map(ct).map
    net = models.load("organ-score", device="cpu")
    out = {"model": f"{net.card['name']} {net.card['version']}", "slices": slices, "start": start}
    region = label_map.array[start:start + slices]
    masks = {"lungs": np.isin(region, (labels.LEFT_LUNG, labels.RIGHT_LUNG)), "right_lung": region == labels.RIGHT_LUNG,
             "body": region == labels.BODY}
    real = ct.array[start:start + slices].astype(float)

    def means(hu):
        return {k: round(float(hu[m].mean()), 1) for k, m in masks.items()}

    out["real_mean_hu"] = means(real)
    runs = {"guidance_1": {"guidance": 1.0}, "guidance_2": {"guidance": 2.0}, "unguided": {"guidance": 0.0},
            "from_air": {"first_neighbour": "air"},
            "right_lung_unticked": {"keep": "body,left lung,trachea"}}
    for key, extra in runs.items():
        res = generate_organs(label_map, net, icnet, start=start, slices=slices, image=ct, **extra)
        hu = res.volume.array.astype(float)
        out[key] = {"evaluations_per_slice": res.settings["evaluations_per_slice"],
                    "s_per_slice": round(res.timings["per_slice"], 3), "mean_hu": means(hu),
                    "mae_to_real_in_body_hu": round(float(np.abs(hu - real)[region > 0].mean()), 1)}
    return out


def montage(ct, grown, settings, path: str) -> None:
    """Coronal reformats: the real CT around the seed beside the grown volume (same slices), and axial slices."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    first = settings["output_first_slice_in_input"]
    real = ct.array[max(first, 0):first + grown.shape[0]]
    row, col = ct.shape[1] // 2, ct.shape[2] // 2
    aspect = ct.spacing[2] / ct.spacing[1]
    fig, ax = plt.subplots(2, 4, figsize=(14, 7))
    panels = ((real[::-1, row, :], "real, coronal"), (grown.array[::-1, row, :], "grown, coronal"),
              (real[::-1, :, col], "real, sagittal"), (grown.array[::-1, :, col], "grown, sagittal"))
    for a, (image, title) in zip(ax[0], panels):       # head at the top
        a.imshow(image, cmap="gray", vmin=-1000, vmax=400, aspect=aspect)
        a.set_title(title)
    seed = settings["slices_below"]
    picks = sorted({0, seed, (seed + grown.shape[0] - 1) // 2 + 1, grown.shape[0] - 1})[:4]
    for a, k in zip(ax[1], picks):
        a.imshow(grown.array[k], cmap="gray", vmin=-1000, vmax=400)
        a.set_title(f"grown axial {k}" + (" (seed)" if k == seed else ""))
    for a in ax.ravel():
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    print("montage:", path)


if __name__ == "__main__":
    main()
