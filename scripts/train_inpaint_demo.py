#!/usr/bin/env python
"""Train a DiffusionInpaint demo model on axial slices of the two sample chest CTs (2-core CPU).

    .venv/bin/python scripts/train_inpaint_demo.py palette --out out/demo-inpaint-palette --steps 3000
    .venv/bin/python scripts/train_inpaint_demo.py repaint --out out/demo-inpaint-slice --steps 3000
    .venv/bin/python scripts/train_inpaint_demo.py sdm     --out out/demo-inpaint-sdm --steps 3000

``palette``: mask-conditioned (``diffusion-inpaint`` card with mask input), trained on random, lesion-shaped and
organ masks; ``repaint``: the same network without mask input, for RePaint; ``sdm``: SPADE map model with map
dropout 0.2, maps from the automatic map plus the real tumour labels. All three take the neighbouring slice.
Slices of lung2 with k % 5 == 0 are held out (not trained on). ``--minutes`` stops early; the card records steps,
seconds per step and the loss. Cards say ``demo: true``: minutes of CPU training on two CTs make a model for trying
the software, not a model of CT.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from radsynth import models  # noqa: E402
from radsynth.nets import inpaint_unet, sdm  # noqa: E402
from radsynth.pipelines.inpaint import labels as L  # noqa: E402
from radsynth.pipelines.inpaint.auto_map import auto_map  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.samplers.ddim import make_scheduler  # noqa: E402
from radsynth.train import inpaint_data as D  # noqa: E402
from radsynth.volume import read_volume  # noqa: E402

WINDOW = (-1000.0, 400.0)       # lung and soft tissue in one window; bone above 400 HU is clipped inside the fill
SPACING = 1.25                  # mm in-plane: a 64-pixel crop is 80 mm, lung2's 55 mm tumour with 12 mm around it
SIZE = 64
ARCH = {"channels": [16, 32, 32], "attention_levels": [False, False, False], "num_res_blocks": 1,
        "num_head_channels": 16, "norm_num_groups": 8, "neighbour": True}
SCHEDULE = {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 1e-4, "beta_end": 0.02,
            "prediction_type": "epsilon", "clip_sample": True}
HELD_OUT = ("lung2", 5)         # slices k % 5 == 0 of lung2


def volumes() -> list[D.SliceVolume]:
    out = []
    for case in ("lung1", "lung2"):
        ct = read_volume(sample_path(case, "image"))
        tumour = read_volume(sample_path(case, "label"))
        vol = D.slice_volume(case, ct, auto_map(ct, tumour).map, SPACING, WINDOW)
        if case == HELD_OUT[0]:
            vol.body[:: HELD_OUT[1]] = False       # crops are centred on body voxels only: held-out slices never
        out.append(vol)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("model", choices=("palette", "repaint", "sdm"))
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=None, help="stop after this much training time")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, default=None, help="continue from this model folder (same model kind)")
    a = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    t_data = time.perf_counter()
    vols = volumes()
    t_data = time.perf_counter() - t_data
    sched = make_scheduler(SCHEDULE)
    if a.model == "sdm":
        classes = L.BASIC
        net = sdm.SDMUNet({**ARCH, "spade_intermediate_channels": 16}, classes)
        kind, arch = sdm.KIND, {**ARCH, "spade_intermediate_channels": 16}
    else:
        arch = {**ARCH, "mask_input": a.model == "palette"}
        net, kind, classes = inpaint_unet.InpaintUNet(arch), inpaint_unet.KIND, None
    steps_before, seconds_before = 0, 0.0
    if a.init is not None:      # continue training: the weights (not the optimizer state) and the step count
        prior = models.load(kind, a.init, device="cpu")
        net.load_state_dict(prior.state_dict())
        steps_before = int(prior.card.get("training", {}).get("steps", 0))
        seconds_before = float(prior.card.get("training", {}).get("seconds", 0.0))
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr)
    # the mask-conditioned model is the healthy filler: neither its targets nor its context ever show a tumour, and
    # half its lesion masks sit on the lung's edge (docs/diffusion-inpaint.md, "Removal against the chest wall")
    healthy = a.model == "palette"
    draw = {"organ_values": (L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA) + (() if healthy else (L.NODULE,)),
            "lung_values": (L.LEFT_LUNG, L.RIGHT_LUNG), "avoid_values": L.NODULES if healthy else (), "avoid_in_context": healthy,
            "lesion_mm": (5.0, 55.0)}
    losses, t0, step = [], time.perf_counter(), 0
    for step in range(1, a.steps + 1):
        b = D.batch(vols, a.batch, SIZE, rng, **draw)
        img, nb = torch.from_numpy(b["image"]), torch.from_numpy(b["neighbour"])
        if a.model == "sdm":
            loss = sdm.training_loss(net, sched, img, net.one_hot(b["labels"]), nb, sdm.MAP_DROPOUT, gen)
        else:
            loss = inpaint_unet.training_loss(net, sched, img, torch.from_numpy(b["mask"]), nb, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        elapsed = time.perf_counter() - t0
        if step % 25 == 0 or step == 1:
            print(f"step {step:5d}  loss {np.mean(losses[-25:]):.4f}  {elapsed / step:.3f} s/step", flush=True)
        if a.minutes is not None and elapsed > 60 * a.minutes:
            break
    seconds = time.perf_counter() - t0
    card = {"name": a.out.name, "kind": kind, "version": "0.1", "demo": True,
            "title": f"DiffusionInpaint demo ({a.model}), trained for minutes on the two sample CTs",
            "licence": "Apache-2.0", "architecture": arch, "schedule": SCHEDULE,
            "region": {"size": [SIZE, SIZE], "spacing": [SPACING, SPACING], "window": list(WINDOW)},
            "sampling": {"steps": 25, "eta": 1.0 if a.model != "palette" else 0.0, "jump_length": 5, "resample": 2},
            "training": {"data": "lung1 + lung2 axial slices (pyradiomics sample data); lung2 slices k % 5 == 0 "
                                 "held out", "steps": steps_before + step, "batch": a.batch, "lr": a.lr, "seconds": round(seconds_before + seconds, 1),
                         "seconds_per_step": round(seconds / step, 3), "data_seconds": round(t_data, 1),
                         "final_loss": round(float(np.mean(losses[-25:])), 4), "threads": torch.get_num_threads(),
                         "machine": platform.processor() or platform.machine(), "torch": torch.__version__}}
    if classes is not None:
        card["classes"] = list(classes)
        card["map_dropout"] = sdm.MAP_DROPOUT
    models.save_model(a.out, net, card, half=True)
    print(json.dumps(card["training"], indent=2))


if __name__ == "__main__":
    main()
