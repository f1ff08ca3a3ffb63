"""Benchmark whole-volume latent generation (radsynth.pipelines.generate.latent): prints numbers, asserts nothing.

CPU (always):
  1. a tiny MAISI-architecture generator (random weights): time and peak memory of one generation per size;
  2. decoding alone: time and peak memory against volume size, whole and tiled, beside the memory estimate.
Demo model (``--demo [FOLDER]``; default the bundled demo-volume-ldm): one generation at its own grid (unguided and
following the sample CT's automatic body/lung map), and its decoder's time and peak memory against volume size,
whole and in windows.
GPU (only when CUDA is present; ``--gpu``): the demo model at its grid, and MAISI networks of published size
(NV-Generate-CT rflow-ct config, random weights) generating 256³ at 1.5 mm (30 RFlow steps, as published: 8 s on
an A100 for the whole run), timed per stage with peak allocated memory beside the estimate.

Each CPU measurement runs in a fresh child process so its peak resident memory (ru_maxrss) is its own.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmark_latent.py [--sizes 32 64 96] [--steps 10] [--gpu]
    OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmark_latent.py --demo [FOLDER] --sizes 64 128 192 [--no-tiny]
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


def demo_child(task: str, size: int, steps: int, tile: int, folder: str, device: str = "cpu") -> dict:
    """The demo model: "demo" one generation at its grid (steps; size 1 = follow lung2's automatic map), or
    "demo-decode" its decoder on a random latent of a size³ volume (tile > 0: windows of tile³ latent voxels)."""
    import torch

    from radsynth.pipelines.generate import latent
    from radsynth.pipelines.generate import whole_volume as wv

    torch.set_flush_denormal(True)
    t_load = time.perf_counter()
    model = wv.load(folder or None, device)
    load_s = time.perf_counter() - t_load
    seg = None
    base = _rss_mib()            # before the automatic map: its peak counts for a guided run
    if task == "demo" and size == 1:
        from radsynth.pipelines.inpaint.auto_map import auto_map
        from radsynth.sample_data import sample_path
        from radsynth.volume import read_volume
        seg = auto_map(read_volume(sample_path("lung2", "image"))).map
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    if task == "demo":
        result = wv.generate(model, steps=steps, seed=0, segmentation=seg)
        seconds = dict(result.timings)
        what = {"size": result.settings["size"], "spacing_mm": result.settings["spacing_mm"],
                "follows_maps": result.settings["follows_maps"],
                "hu_mean": round(float(result.volume.array.mean()), 1)}
    else:
        f = model.card["latent"]["downsample"]
        z = torch.randn(1, model.card["latent"]["channels"], *(size // f,) * 3)
        latent.decode_latent(model, z, tile=None if tile <= 0 else (tile,) * 3, overlap=0.4)
        if cuda:
            torch.cuda.synchronize()
        seconds = {"decoding": time.perf_counter() - t}
        what = {"size": [size] * 3, "tile": tile or None}
    peak = (torch.cuda.max_memory_allocated() / 2 ** 20) if cuda else _rss_mib() - base
    return {"task": task, **what, "load_s": round(load_s, 2), "seconds": {k: round(v, 3) for k, v in seconds.items()},
            "steps": steps, ("peak_allocated_mib" if cuda else "peak_extra_mib"): round(peak, 1)}


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


def run_child(task: str, size: str, steps: str, tile: str, *extra: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", task, size, steps, tile, *extra],
                         capture_output=True, text=True, check=False)
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
    ap.add_argument("--demo", nargs="?", const="", default=None, metavar="FOLDER",
                    help="benchmark the demo model (default the bundled one) or the volume-ldm model in FOLDER")
    ap.add_argument("--demo-steps", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--no-tiny", action="store_true", help="skip the random tiny-network section")
    ap.add_argument("--model-folder", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        task, size, steps, tile = args.child
        if task.startswith("demo"):
            print(json.dumps(demo_child(task, int(size), int(steps), int(tile), args.model_folder)))
        else:
            print(json.dumps(child(task, int(size), int(steps), int(tile))))
        return
    import torch
    if args.demo is not None:
        extra = ["--model-folder", args.demo]
        print(f"Demo model ({args.demo or 'bundled demo-volume-ldm'}), CPU, {torch.get_num_threads()} threads:")
        for steps in args.demo_steps:
            for follow in (0, 1):
                r = run_child("demo", str(follow), str(steps), "0", *extra)
                print(f"  generate, {steps} RFlow steps, {'following lung2 map' if follow else 'unguided'}: {r}")
        for size in args.sizes:
            half = max(8, (size // 4 // 2 + 3) // 4 * 4)      # a window half the latent's side (multiple of 4)
            for tile in (0, half) if half < size // 4 else (0,):
                r = run_child("demo-decode", str(size), "0", str(tile), *extra)
                print(f"  decode {size}³ {'whole' if tile == 0 else f'in {tile}³-latent windows'}: {r}")
        if args.gpu and torch.cuda.is_available():
            for steps in args.demo_steps:
                print(f"  GPU generate {steps} steps:", json.dumps(demo_child("demo", 0, steps, 0, args.demo, "cuda")))
            for size in (*args.sizes, 256):
                print(f"  GPU decode {size}³ whole:", json.dumps(demo_child("demo-decode", size, 0, 0, args.demo,
                                                                             "cuda")))
        if args.no_tiny:
            if args.gpu:
                gpu(args.gpu_size, 30)
            return
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
