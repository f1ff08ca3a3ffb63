"""Benchmark whole-volume latent generation (radsynth.pipelines.generate.latent): prints numbers, asserts nothing.

CPU (always):
  1. a tiny MAISI-architecture generator (random weights): time and peak memory of one generation per size;
  2. decoding alone: time and peak memory against volume size, whole and tiled, beside the memory estimate.
GPU (only when CUDA is present; ``--gpu``): MAISI networks of published size (NV-Generate-CT rflow-ct config,
random weights) generating 256³ at 1.5 mm (30 RFlow steps, as published: 8 s on an A100 for the whole run),
timed per stage with peak allocated memory beside the estimate.

Each CPU measurement runs in a fresh child process so its peak resident memory (ru_maxrss) is its own.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmark_latent.py [--sizes 32 64 96] [--steps 10] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _tiny(device: str = "cpu", scale: str = "tiny"):
    import torch

    from radsynth.nets import maisi
    from radsynth.nets import maisi_config as mc

    torch.manual_seed(0)
    arch = mc.parse_network_config(mc.example_config(scale))
    nets = {p: maisi.build_network(p, arch[mc.PARTS[p][0]], device).to(device).eval()
            for p in ("autoencoder", "diffusion")}
    card = {"name": f"{scale}-random", "version": "0", "architecture": arch, "networks": list(nets),
            "latent": {"scale_factor": 1.0, "channels": 4, "downsample": mc.downsample_factor(arch)},
            "scheduler": mc.scheduler_spec(arch["noise_scheduler"]),
            "sampling": {"sampler": "rflow", "default_steps": 30, "decode_overlap": 0.4, "autocast": "float16"},
            "intensity": dict(mc.MAISI_CT_INTENSITY),
            "conditioning": {"spacing": True, "body_region": False, "class_label": 1},
            "grid": {"orientation": "RAS", "spacing_range_mm": [[0.5, 5.0]] * 3}}
    return maisi.MaisiNetworks(nets["autoencoder"], nets["diffusion"], None, card, torch.device(device))


def child(task: str, size: int, steps: int, tile: int) -> dict:
    import torch

    from radsynth.pipelines.generate import latent
    from radsynth.nets import maisi_config as mc

    torch.set_flush_denormal(True)
    model = _tiny()
    arch = model.card["architecture"]
    f = mc.downsample_factor(arch)
    shape = (size, size, size)
    tile_t = None if tile <= 0 else (tile,) * 3
    est = mc.estimate_memory(arch, shape, "cpu", model.parameter_bytes(), tile=tile_t)
    z = torch.randn(1, 4, *(s // f for s in shape))
    base = _rss_mib()
    t = time.perf_counter()
    if task == "generate":
        result = latent.generate_volume(model, shape, (1.5, 1.5, 1.5), steps=steps, seed=0, available=1e15)
        seconds = result.timings
    else:
        latent.decode_latent(model, z, tile=tile_t, overlap=0.4)
        seconds = {"decoding": time.perf_counter() - t}
    peak = _rss_mib() - base
    return {"task": task, "size": size, "tile": tile_t, "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "peak_extra_mib": round(peak, 1),
            "estimate_mib": {"diffusion": round(est.diffusion / 2 ** 20, 1),
                             "decoding": round(est.decoding / 2 ** 20, 1),
                             "host_output": round(est.host_output / 2 ** 20, 1),
                             "total_with_overhead": round(est.device_total / 2 ** 20, 1)}}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def gpu(size: int, steps: int) -> None:
    import torch

    from radsynth.pipelines.generate import latent
    from radsynth.nets import maisi_config as mc

    if not torch.cuda.is_available():
        print("GPU: no CUDA device here; section skipped.")
        return
    dev = torch.device("cuda")
    print(f"GPU: {torch.cuda.get_device_name(dev)}; published-size MAISI rflow-ct networks, random weights")
    model = _tiny("cuda", "published")
    arch = model.card["architecture"]
    counts = {n: sum(p.numel() for p in m.parameters()) for n, m in
              (("autoencoder", model.autoencoder), ("diffusion", model.diffusion))}
    print("  parameters:", counts)
    shape = (size, size, size)
    f = mc.downsample_factor(arch)
    lat = tuple(s // f for s in shape)
    # warm-up (cuDNN autotuning, kernels) on a small latent, not counted
    latent.sample_latent(model, (16, 16, 16), steps=2, sampler="rflow", seed=0, spacing=(1.5,) * 3)
    torch.cuda.synchronize()
    for tile in (None, (48, 48, 64), (32, 32, 32)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        z = latent.sample_latent(model, lat, steps=steps, sampler="rflow", seed=0, spacing=(1.5,) * 3)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        diff_peak = torch.cuda.max_memory_allocated(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        latent.decode_latent(model, z, tile=tile, overlap=0.4)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        dec_peak = torch.cuda.max_memory_allocated(dev)
        est = mc.estimate_memory(arch, shape, "cuda", model.parameter_bytes(), tile=tile)
        print(f"  {size}³ tile {tile}: diffusion {steps} steps {t1 - t0:.2f} s (peak {diff_peak / 2 ** 30:.2f} GiB,"
              f" estimate {(est.weights + est.diffusion) / 2 ** 30:.2f}), decode {t2 - t1:.2f} s (peak "
              f"{dec_peak / 2 ** 30:.2f} GiB, estimate {(est.weights + est.decoding) / 2 ** 30:.2f}); total "
              f"{t2 - t0:.2f} s (MAISI on an A100: 8 s for 256³)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--gpu", action="store_true", help="run the GPU section (needs CUDA)")
    ap.add_argument("--gpu-size", type=int, default=256)
    args = ap.parse_args()
    if args.child:
        task, size, steps, tile = args.child
        print(json.dumps(child(task, int(size), int(steps), int(tile))))
        return
    import torch
    print(f"CPU: torch {torch.__version__}, {torch.get_num_threads()} threads; tiny MAISI-architecture networks "
          "(random weights)")
    for size in args.sizes:
        r = run_child("generate", str(size), str(args.steps), "0")
        print(f"  generate {size}³, {args.steps} RFlow steps: {r}")
    for size in args.sizes:
        half = max(8, (size // 4 // 2 + 3) // 4 * 4)      # a window half the latent's side (multiple of 4)
        for tile in (0, half) if half < size // 4 else (0,):
            r = run_child("decode", str(size), "0", str(tile))
            print(f"  decode {size}³ {'whole' if tile == 0 else f'in {tile}³-latent windows'}: {r}")
    if args.gpu:
        gpu(args.gpu_size, 30)
    else:
        print("GPU section not requested (--gpu).")


if __name__ == "__main__":
    main()
