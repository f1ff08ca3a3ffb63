#!/usr/bin/env python
"""Time one forward of each bundled model and record it in the model's card (``timing``).

A forward is what one step of the model's use costs: the VQ-GAN encodes and decodes one crop of its region size,
the BBDM texture UNet predicts once on one latent (one sampler step; classifier-free guidance doubles it), the shape
GAN draws one mask. Each is timed after a warm-up forward; the median of --repeats is recorded. GPU timing is
measured when CUDA is available, else recorded as null with the reason. Only the card changes; the weights and
their sha256 stay as they are.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/measure_model_timing.py            # measure and record
    .venv/bin/python scripts/measure_model_timing.py --dry-run                    # print only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from typing import Callable

import torch

from radsynth import models


def _vqgan(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    size = tuple(loaded.card["region"]["size"])
    x = torch.zeros((1, 1) + size, device=device)

    def forward() -> None:
        loaded.codec.decode(loaded.codec.encode(x))
    return forward, f"encode + decode of one {'x'.join(map(str, size))} crop"


def _bbdm(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    size = tuple(s // (2 ** len(loaded.vq_card["architecture"]["channels"])) for s in loaded.spec.size)
    c = loaded.texture_card["latent_channels"]
    x = torch.zeros((1, c) + size, device=device)
    mask = torch.zeros((1, 1) + size, device=device)
    features = torch.zeros((1, len(loaded.normalizer.names)), device=device)
    t = torch.full((1,), 500, device=device, dtype=torch.long)
    null = torch.zeros(1, dtype=torch.bool, device=device)

    def forward() -> None:
        loaded.texture(x, x, mask, t, features, null)
    return forward, f"one texture UNet prediction on a {c}x{'x'.join(map(str, size))} latent (one sampler step)"


def _shape(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    z = torch.zeros((1, loaded.generator.z_dim), device=device)
    features = torch.zeros((1, len(loaded.names)), device=device)

    def forward() -> None:
        loaded.generator(z, features)
    return forward, f"one {loaded.grid}^3 mask from the generator"


def _slice_score(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    size, k = loaded.card["grid"]["size"], loaded.slices
    x = torch.zeros((1, k, size, size), device=device)
    sigma = torch.ones(1, device=device)

    def forward() -> None:
        loaded(x, sigma)
    return forward, f"one score evaluation on {k}x{size}^2 (a slice costs 39 with the fast sampler, 1999 with PC)"


def _icnet(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    size = (loaded.card.get("grid") or {}).get("size", 64)
    x = torch.zeros((1, 1, size, size), device=device)

    def forward() -> None:
        loaded(x, x)
    return forward, f"one calibration of a {size}^2 slice"


def _volume_ldm(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    card = loaded.card
    f = card["latent"]["downsample"]
    latent = [s // f for s in card["grid"]["default_size"]]
    extra = len((card["conditioning"].get("mask_channels") or {}).get("labels") or ())
    x = torch.zeros((1, card["latent"]["channels"] + extra, *latent), device=device)
    t = torch.tensor([500.0], device=device)

    def forward() -> None:
        loaded.diffusion(x=x, timesteps=t)
    return forward, (f"one diffusion UNet step on the {'x'.join(map(str, latent))} latent (a volume costs "
                     f"{card['sampling']['default_steps']} steps and one decode)")


def _inpaint(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    h, w = loaded.card["region"]["size"][:2]
    x = torch.zeros((1, 1, h, w), device=device)
    mask = torch.ones_like(x) if loaded.mask_input else None
    neighbour = x if loaded.neighbour else None
    t = torch.full((1,), 500, device=device, dtype=torch.long)

    def forward() -> None:
        loaded(x, t, x if loaded.mask_input else None, mask, neighbour)
    method = "DDIM" if loaded.mask_input else "RePaint, 45 with the default jumps"
    return forward, f"one slice-model prediction on {h}x{w} (one sampler step; {method})"


def _sdm(loaded, device: torch.device) -> tuple[Callable[[], None], str]:
    h, w = loaded.card["region"]["size"][:2]
    x = torch.zeros((1, 1, h, w), device=device)
    seg = loaded.one_hot(torch.zeros((1, h, w), dtype=torch.long)).to(device)
    t = torch.full((1,), 500, device=device, dtype=torch.long)

    def forward() -> None:
        loaded(x, t, seg, x if loaded.neighbour else None)
    return forward, f"one SDM prediction on {h}x{w} (one RePaint step; guidance doubles it)"


PROBES = {"vqgan": _vqgan, "bbdm-texture": _bbdm, "shape-gan": _shape, "slice-score": _slice_score,
          "organ-score": _slice_score, "icnet": _icnet, "volume-ldm": _volume_ldm,
          "diffusion-inpaint": _inpaint, "sdm": _sdm}


def measure(kind: str, folder, device: torch.device, repeats: int) -> tuple[float, str]:
    loaded = models.load(kind, folder, device)
    forward, what = PROBES[kind](loaded, device)
    with torch.inference_mode():
        forward()  # warm-up: allocations, kernel selection
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            forward()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    return statistics.median(times), what


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="print the timings without writing the cards")
    parser.add_argument("--only", nargs="*", default=None, help="measure only these bundled models (names)")
    args = parser.parse_args()
    torch.set_flush_denormal(True)
    cpu = torch.device("cpu")
    gpu = torch.device("cuda") if torch.cuda.is_available() else None
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
               f"{torch.get_num_threads()} torch threads, torch {torch.__version__}")
    for model in models.installed():
        if model.source != "bundled" or model.card["kind"] not in PROBES:
            continue
        if args.only is not None and model.name not in args.only:
            continue
        kind = model.card["kind"]
        cpu_s, what = measure(kind, model.folder, cpu, args.repeats)
        timing = {"forward": what, "cpu_s": round(cpu_s, 4), "cpu": machine, "repeats": args.repeats,
                  "measured_by": "scripts/measure_model_timing.py"}
        if gpu is not None:
            gpu_s, _ = measure(kind, model.folder, gpu, args.repeats)
            timing.update(gpu_s=round(gpu_s, 5), gpu=torch.cuda.get_device_name(gpu))
        else:
            timing.update(gpu_s=None, gpu=None, gpu_reason="no CUDA GPU on the machine that measured it")
        print(model.name, json.dumps(timing))
        if not args.dry_run:
            models.record_in_card(model.folder, "timing", timing)


if __name__ == "__main__":
    main()
