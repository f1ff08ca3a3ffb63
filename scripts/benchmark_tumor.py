"""TumorSynth texture-path benchmark: end-to-end timings per stage and removal quality vs sampling steps.

python scripts/benchmark_tumor.py [--device auto] [--repeats 3] [--regions 6] [--steps 10 20 30 50 200]
Prints numbers; record them in BENCHMARKS.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time

import numpy as np
import torch

from radsynth.evaluate.heldout import heldout_regions
from radsynth.evaluate.metrics import psnr_in_mask, ssim_in_box
from radsynth.pipelines import manipulate
from radsynth.pipelines.loading import load_models
from radsynth.pipelines.shape import load_shape_model
from radsynth.pipelines.tumor import remove, synthesize
from radsynth.radiomics import load_preset
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume
from radsynth.worker.runner import Runner


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timing(models, repeats: int) -> dict:
    lung2, label2 = read_volume(sample_path("lung2")), read_volume(sample_path("lung2", "label"))
    lung1 = read_volume(sample_path("lung1"))
    where = lung1.with_array(heldout_regions(lung1, 1, seed=3, diameter_mm=(20, 20))[0].astype(np.uint8))
    target = load_preset("lung2-tumor")
    point = lung1.index_to_physical(np.argwhere(where.array > 0).mean(0)[None])[0]
    shape_model = load_shape_model(device=models.device)
    out = {}
    # the CLI's and the panel's removal (DiffusionInpaint's healthy fill, ADR 0012) runs through the registry
    with Runner() as runner:
        for name, run in (("remove (default: inpaint)", lambda: runner("remove", lung2, label2)),
                          ("remove (bridge)", lambda: remove(lung2, label2, models)),
                          ("synthesize", lambda: synthesize(lung1, where, models, target=target)),
                          ("place", lambda: manipulate.place(lung1, target, point_lps=point, models=models,
                                                             shape_model=shape_model,
                                                             shape_features={"volume_ml": 4.0})),
                          ("move", lambda: manipulate.move(lung1, where, (0.0, 10.0, 0.0), models=models))):
            runs = []
            for _ in range(repeats):
                t = time.perf_counter()
                result = run()
                runs.append(dict(result.timings, total=time.perf_counter() - t))
            out[name] = {k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]}
            print(f"{name:10s} " + "  ".join(f"{k} {v:.2f}s" for k, v in out[name].items()), flush=True)
    return out


def quality(models, regions: int, steps_list: list[int], eta: float) -> dict:
    window = models.spec.window
    data_range = window[1] - window[0]
    rows = {s: {"psnr": [], "ssim": []} for s in steps_list}
    for case in ("lung1", "lung2"):
        image = read_volume(sample_path(case))
        for i, mask in enumerate(heldout_regions(image, regions, seed=11)):
            mvol = image.with_array(mask.astype(np.uint8))
            for s in steps_list:
                res = remove(image, mvol, models, steps=s, eta=eta, seed=i)
                ref = np.clip(image.array, *window)
                test = np.clip(res.volume.array, *window)
                rows[s]["psnr"].append(psnr_in_mask(ref, test, mask, data_range))
                rows[s]["ssim"].append(ssim_in_box(ref, test, mask, data_range))
    summary = {s: {"psnr_db": round(float(np.mean(v["psnr"])), 2), "ssim": round(float(np.mean(v["ssim"])), 4),
                   "n": len(v["psnr"])} for s, v in rows.items()}
    for s, v in summary.items():
        print(f"eta {eta:g} steps {s:4d}: PSNR {v['psnr_db']:.2f} dB  SSIM {v['ssim']:.4f}  (n={v['n']})", flush=True)
    # more steps is not always better: the demo BBDM 0.3.0 peaks at 20 (η = 1 adds detail that PSNR penalizes)
    best = max(v["psnr_db"] for v in summary.values())
    default = min(s for s in steps_list if summary[s]["psnr_db"] >= best - 0.5)
    print(f"smallest step count within 0.5 dB of the best ({best:.2f} dB): {default}")
    return {"by_steps": summary, "recommended_default_steps": default}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="auto")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--regions", type=int, default=6)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 20, 30, 50, 200])
    p.add_argument("--eta", type=float, nargs="+", default=[0.0, 1.0])
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    t = time.perf_counter()
    models = load_models(device=a.device)
    load_s = time.perf_counter() - t
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "device": str(models.device), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "torch": torch.__version__}
    print(json.dumps(machine))
    print(f"model load {load_s:.2f}s")
    result = {"machine": machine, "model_load_s": round(load_s, 3), "timing": timing(models, a.repeats)}
    if not a.skip_quality:
        result["quality"] = {f"eta={eta:g}": quality(models, a.regions, a.steps, eta) for eta in a.eta}
    result["peak_rss_mb"] = round(peak_rss_mb())
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
    print(f"peak RSS {result['peak_rss_mb']} MB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
