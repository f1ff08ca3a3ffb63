"""Train the 3D VQ-GAN (L1 + vector-quantization + patch-adversarial losses) on random CT crops.

python -m radsynth.train.vqgan --out DIR [--data ROOT] [--steps N]   (no --data: the bundled sample CTs)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from monai.losses import PatchAdversarialLoss

from ..device import pick_device
from ..models import save_model
from ..nets.vqgan import DEFAULT_VQVAE, build_discriminator, build_vqvae
from ..region import RegionSpec
from .data import Case, cases_from_folder, crop, lesion_mask, load_case, lung_region, random_center, sample_cases
from .texture_bank import procedural_tumour

DEFAULT_SPEC = RegionSpec(size=(64, 64, 64), spacing=(1.5, 1.5, 1.5), window=(-1024.0, 1024.0))


#: crops holding a procedural tumour (random mean, spread and grain, texture_bank.py): the two sample CTs have two
#: tumours, and a codec that never saw textured lesions smooths them away (the 0.1.0 codec turned a sphere with
#: texture SD 120 HU into SD 31 HU, so no texture model on top of it could follow a heterogeneity slider)
PROCEDURAL_FRACTION = 0.4
#: L1 inside lesions counts this much more per voxel (the paper's ROI-L1 weight, notes 004 §1.3): lesions are what
#: the texture model must render, and they are a few % of a crop
ROI_WEIGHT = 10.0


def random_batch(cases: list[Case], batch: int, size: int, spec: RegionSpec,
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` crops and their lesion masks (empty for plain tissue)."""
    xs, rois = [], []
    for _ in range(batch):
        case, draw = cases[rng.integers(len(cases))], rng.random()
        if case.tumor.any() and draw < 0.2:
            c = random_center(case, rng, case.tumor, margin=4, key="tumor") + rng.integers(-8, 9, 3)
            x, roi = crop(case.image, c, size, -1.0), crop(case.tumor, c, size, False)
        elif draw < 0.2 + PROCEDURAL_FRACTION:
            c = random_center(case, rng, lambda: lung_region(case), margin=size // 2, key="lung")
            roi = lesion_mask(size, spec.spacing[0], rng, (6.0, min(50.0, 0.8 * size * spec.spacing[0])))
            x = procedural_tumour(crop(case.image, c, size, -1.0), roi, spec, rng)
        else:
            c = random_center(case, rng, case.body, margin=4, key="body") + rng.integers(-8, 9, 3)
            x, roi = crop(case.image, c, size, -1.0), np.zeros((size,) * 3, dtype=bool)
        if rng.random() < 0.5:
            x, roi = x[:, :, ::-1], roi[:, :, ::-1]  # left-right mirror is anatomically plausible; others are not
        xs.append(np.ascontiguousarray(x))
        rois.append(np.ascontiguousarray(roi))
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(rois)[:, None].astype(np.float32))


def latent_stats(model, cases: list[Case], size: int, spec: RegionSpec, device,
                 n: int = 32) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(1)
    with torch.no_grad():
        z = torch.cat([model.encode(random_batch(cases, 1, size, spec, rng)[0].to(device)).cpu() for _ in range(n)])
    dims = [0, 2, 3, 4]
    return z.mean(dims).tolist(), z.std(dims).clamp_min(1e-3).tolist()


def train(out: Path, data: Path | None, steps: int, batch: int, lr: float, adv_weight: float,
          adv_start: int, device_name: str, seed: int, crop_size: int = 48) -> dict:
    """``crop_size`` < the model region: the network is convolutional, and a 48³ crop costs 42 % of a 64³ one."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = pick_device(device_name)
    spec = DEFAULT_SPEC
    sources = cases_from_folder(data) if data else sample_cases()
    cases = [load_case(*s, spec) for s in sources]
    arch = dict(DEFAULT_VQVAE)
    model = build_vqvae(arch).to(device)
    disc = build_discriminator().to(device)
    opt_g = torch.optim.Adam(model.parameters(), lr=lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr)
    adv = PatchAdversarialLoss(criterion="least_squares")
    t0, log = time.time(), []
    for step in range(1, steps + 1):
        x, roi = (v.to(device) for v in random_batch(cases, batch, crop_size, spec, rng))
        recon, q_loss = model(x)
        err = (recon - x).abs()
        l1 = err.mean()
        # ROI term per voxel of the crop: an ROI mean made training diverge
        loss = l1 + q_loss.mean() + ROI_WEIGHT * (err * roi).mean()
        use_adv = adv_weight > 0 and step > adv_start
        if use_adv:
            loss = loss + adv_weight * adv(disc(recon.contiguous().float())[-1], target_is_real=True,
                                           for_discriminator=False)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        if use_adv:
            d_loss = 0.5 * (adv(disc(recon.detach().contiguous())[-1], target_is_real=False, for_discriminator=True)
                            + adv(disc(x)[-1], target_is_real=True, for_discriminator=True))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
        if step % 25 == 0 or step == steps:
            hu = l1.item() * (spec.window[1] - spec.window[0]) / 2
            log.append({"step": step, "l1": round(l1.item(), 5), "l1_hu": round(hu, 1),
                        "seconds": round(time.time() - t0, 1)})
            print(json.dumps(log[-1]), flush=True)
    model.eval()
    mean, std = latent_stats(model, cases, spec.size[0], spec, device)
    card = {
        "name": out.name, "kind": "vqgan", "version": "0.2.0",
        "description": "3D VQ-GAN (MONAI VQVAE) compressing 64^3 CT crops at 1.5 mm to 4x16^3 latents.",
        "demo": data is None,
        "architecture": arch,
        "region": {"size": list(spec.size), "spacing": list(spec.spacing), "window": list(spec.window)},
        "latent": {"channels": arch["embedding_dim"], "factor": 4, "mean": mean, "std": std},
        "training": {"data": [s[0] for s in sources], "steps": steps, "batch": batch, "crop": crop_size, "lr": lr,
                     "roi_weight": ROI_WEIGHT, "procedural_fraction": PROCEDURAL_FRACTION,
                     "adversarial_weight": adv_weight, "seconds": round(time.time() - t0),
                     "device": str(device), "final": log[-1] if log else None},
    }
    if data is None:
        card["warning"] = ("DEMO MODEL trained for minutes on two sample chest CTs; for trying the software only, "
                           "not for research or clinical use.")
    return save_model(out, model, card)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--crop", type=int, default=48, help="training crop edge (voxels)")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--adv-weight", type=float, default=0.01)
    p.add_argument("--adv-start", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    card = train(a.out, a.data, a.steps, a.batch, a.lr, a.adv_weight, a.adv_start, a.device, a.seed, a.crop)
    print(json.dumps(card["training"], indent=1))


if __name__ == "__main__":
    main()
