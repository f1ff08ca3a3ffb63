#!/usr/bin/env python
"""DiffusionInpaint timings with the bundled demo models, end to end through the registry (as the CLI and Slicer
run them): a 30 mm ball in lung1's lung (5 mm slices) filled healthy with the mask-conditioned model at its default
steps (target ≤ 20 s on the 2-core CPU, ≤ 50 network evaluations per slice); the same with RePaint; the automatic
map; SDM rendering the whole map of lung1's tumour region, timed per slice; peak memory.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/benchmark_inpaint.py [--models DIR] [--skip-repaint]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import numpy as np
import torch

from radsynth.evaluate.heldout import ellipsoid
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume
from radsynth.worker.runner import Runner


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def timed(runner: Runner, op: str, *args, **kw) -> tuple[float, object]:
    runner(op, *args, **kw)                 # warm: models loaded, first-call allocations made
    t0 = time.perf_counter()
    res = runner(op, *args, **kw)
    return round(time.perf_counter() - t0, 2), res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=None, help="folder holding demo-inpaint-* (default: bundled)")
    ap.add_argument("--skip-repaint", action="store_true")
    a = ap.parse_args()
    torch.set_flush_denormal(True)
    from radsynth import models
    folder = (lambda n: str(a.models / n)) if a.models else (lambda n: str(models.find(n).folder))
    ct = read_volume(sample_path("lung1", "image"))
    ball = ct.label_like(ellipsoid(ct, np.array([24, 330, 150]), np.array([15.0, 15.0, 15.0])))
    rows: dict = {"threads": torch.get_num_threads(), "ct": "lung1 (5 mm slices)", "region": "30 mm ball in lung"}

    with Runner(model_dir=folder("demo-inpaint-palette")) as r:
        t, res = timed(r, "fill", ct, ball, mode="healthy")
        rows["fill_palette"] = {"seconds": t, **{k: res.settings.get(k) for k in ("steps", "slices", "network_evaluations")}}
    if not a.skip_repaint:
        with Runner(model_dir=folder("demo-inpaint-slice")) as r:
            t, res = timed(r, "fill", ct, ball, mode="healthy")
            rows["fill_repaint"] = {"seconds": t,
                                    **{k: res.settings.get(k) for k in ("steps", "slices", "network_evaluations")}}
    t0 = time.perf_counter()
    with Runner() as r:
        label_map = r("auto-map", ct, nodules=read_volume(sample_path("lung1", "label"))).volume
    rows["auto_map_seconds"] = round(time.perf_counter() - t0, 2)
    with Runner(model_dir=folder("demo-inpaint-sdm")) as r:
        t, res = timed(r, "render-map", ct, None, label_map=label_map)
        slices = res.settings.get("slices") or 1
        rows["render_map"] = {"seconds": t, "slices": slices, "s_per_slice": round(t / slices, 2),
                              "evaluations": res.settings.get("network_evaluations")}
    rows["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
