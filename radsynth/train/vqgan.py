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
from .data import Case, cases_from_folder, crop, load_case, random_center, sample_cases

DEFAULT_SPEC = RegionSpec(size=(64, 64, 64), spacing=(1.5, 1.5, 1.5), window=(-1024.0, 1024.0))


def random_batch(cases: list[Case], batch: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = []
    for _ in range(batch):
        case = cases[rng.integers(len(cases))]
        key = "tumor" if (case.tumor.any() and rng.random() < 0.25) else "body"
        c = random_center(case, rng, getattr(case, key), margin=4, key=key) + rng.integers(-8, 9, 3)
        x = crop(case.image, c, size, -1.0)
        if rng.random() < 0.5:
            x = x[:, :, ::-1]  # left-right mirror is anatomically plausible; other flips are not
        out.append(np.ascontiguousarray(x))
    return torch.from_numpy(np.stack(out)[:, None])


def latent_stats(model, cases: list[Case], size: int, device, n: int = 32) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(1)
    with torch.no_grad():
        z = torch.cat([model.encode(random_batch(cases, 1, size, rng).to(device)).cpu() for _ in range(n)])
    dims = [0, 2, 3, 4]
    return z.mean(dims).tolist(), z.std(dims).clamp_min(1e-3).tolist()


def train(out: Path, data: Path | None, steps: int, batch: int, lr: float, adv_weight: float,
          adv_start: int, device_name: str, seed: int) -> dict:
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
        x = random_batch(cases, batch, spec.size[0], rng).to(device)
        recon, q_loss = model(x)
        l1 = (recon - x).abs().mean()
        loss = l1 + q_loss.mean()
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
    mean, std = latent_stats(model, cases, spec.size[0], device)
    card = {
        "name": out.name, "kind": "vqgan", "version": "0.1.0",
        "description": "3D VQ-GAN (MONAI VQVAE) compressing 64^3 CT crops at 1.5 mm to 4x16^3 latents.",
        "demo": data is None,
        "architecture": arch,
        "region": {"size": list(spec.size), "spacing": list(spec.spacing), "window": list(spec.window)},
        "latent": {"channels": arch["embedding_dim"], "factor": 4, "mean": mean, "std": std},
        "training": {"data": [s[0] for s in sources], "steps": steps, "batch": batch, "lr": lr,
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
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--adv-weight", type=float, default=0.01)
    p.add_argument("--adv-start", type=int, default=200)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    card = train(a.out, a.data, a.steps, a.batch, a.lr, a.adv_weight, a.adv_start, a.device, a.seed)
    print(json.dumps(card["training"], indent=1))


if __name__ == "__main__":
    main()
