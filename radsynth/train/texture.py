"""Train the BBDM texture generator in the VQ-GAN latent, both paths in one model.

Synthesis: a lesion-shaped region is masked → the tissue inside it, conditioned on that tissue's radiomics
  (real tumours, other tissue, procedural tumours: see texture_bank.py).
Removal: a lesion-shaped mask on healthy tissue (never on a tumour) → the original tissue, learned null condition.
  Synthesis samples start from a source holding a coarse texture of their mean and SD (texture_prior.py); 10 %
  are trained with the null tokens, so guidance w scales what the tokens add: prior only (0) → requested (1) → more.

python -m radsynth.train.texture --vqgan DIR --out DIR [--data ROOT] [--samples N] [--steps N]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..device import pick_device
from ..models import load_into, load_model, save_model
from ..processes.bridge import BrownianBridge
from ..conditioning import fit_gaussian
from ..radiomics import FeatureNormalizer, texture_feature_names
from ..region import RegionSpec
from ..texture_prior import MEAN_SD_CONTRAST, with_prior
from .data import cases_from_folder, load_case, sample_cases
from .texture_bank import TUMOUR_KINDS, build_bank
from ..nets.texture_unet import DEFAULT_UNET, TextureUNet
from ..pipelines.loading import load_codec

#: the masked region is ~1% of a latent: unweighted, the loss is dominated by copying context and the model
#: learns identity (it did: the first demo model filled every hole with the fill value)
HOLE_WEIGHT = 20.0
FILL = 0.0  # masked voxels get 0 HU-equivalent; the explicit mask channel tells the model which voxels are unknown


#: synthesis samples trained with null tokens (their prior source kept), so guidance has an unconditional branch
COND_DROPOUT = 0.1


def masked_input(image: np.ndarray, mask: np.ndarray, feats, spec: RegionSpec, rng: np.random.Generator):
    """The bridge's source: the hole filled with the constant (removal) or the requested coarse texture."""
    blank = np.where(mask > 0, FILL, image).astype(np.float32)
    return blank if feats is None else with_prior(blank, mask, feats, spec, rng)


@torch.no_grad()
def _roundtrip(codec, img: np.ndarray, device) -> np.ndarray:
    return codec.decode(codec.encode(torch.from_numpy(img)[None, None].to(device)))[0, 0].cpu().numpy()


@torch.no_grad()
def encode_bank(codec, bank, normalizer: FeatureNormalizer, device, factor: int, spec: RegionSpec,
                rng: np.random.Generator):
    # Preallocated: small tensors kept one by one between the codec's large temporaries fragment the CPU heap
    # (500 samples took 24 GB and the OOM killer); copying into one block keeps it at the bank's own size.
    n, shape = len(bank), bank[0][0].shape
    latent = codec.encode(torch.zeros((1, 1) + shape, device=device)).shape[1:]
    x0, y = torch.empty((n,) + latent), torch.empty((n,) + latent)
    m = torch.empty((n, 1) + tuple(s // factor for s in shape))
    f, null = torch.zeros(n, len(normalizer.names)), torch.zeros(n, dtype=torch.bool)
    for i, (img, msk, feats, _) in enumerate(bank):
        x0[i] = codec.encode(torch.from_numpy(img)[None, None].to(device))[0].cpu()
        src = masked_input(img, msk, feats, spec, rng)
        y[i] = codec.encode(torch.from_numpy(src)[None, None].to(device))[0].cpu()
        m[i] = F.avg_pool3d(torch.from_numpy(msk)[None, None], factor)[0]
        if feats:
            f[i] = torch.from_numpy(normalizer.normalize(feats))
        null[i] = feats is None
    return x0, y, m, f, null


def train(vqgan: Path, out: Path, data: Path | None, samples: int, steps: int, batch: int, lr: float,
          device_name: str, seed: int, init: Path | None = None, save_every: int = 0) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = pick_device(device_name)
    codec, vq_card = load_codec(vqgan, device)
    spec = RegionSpec(tuple(vq_card["region"]["size"]), tuple(vq_card["region"]["spacing"]),
                      tuple(vq_card["region"]["window"]))
    t0 = time.time()
    sources = cases_from_folder(data) if data else sample_cases()
    cases = [load_case(*s, spec) for s in sources]
    bank = build_bank(cases, spec, samples, rng, roundtrip=lambda img: _roundtrip(codec, img, device))
    names = texture_feature_names()
    rows = [b[2] for b in bank if b[2] is not None]
    normalizer = FeatureNormalizer.fit(names, rows)
    # the sliders complete tumour requests: fitted on all samples, "lung vs soft tissue" would dominate every
    # regression (a brighter tumour would also be asked to be homogeneous, a more contrasted one to be air)
    gaussian = fit_gaussian(np.stack([normalizer.normalize(b[2]) for b in bank if b[3] in TUMOUR_KINDS]))
    x0, y, m, f, null = encode_bank(codec, bank, normalizer, device, vq_card["latent"]["factor"], spec, rng)
    n_tumor = sum(1 for b in bank if b[2] is not None)
    print(json.dumps({"bank": len(bank), "synthesis": n_tumor, "removal": len(bank) - n_tumor,
                      "seconds": round(time.time() - t0, 1)}), flush=True)

    bridge = BrownianBridge()
    arch = dict(DEFAULT_UNET)
    model = TextureUNet(vq_card["latent"]["channels"], len(names), arch).to(device)
    if init is not None:
        _init_from(model, init)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.05)
    make_card = _card(out, data, arch, vq_card, bridge, normalizer, gaussian, sources, bank, n_tumor, batch, lr, device,
                      t0, init)
    t1, log = time.time(), []
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(bank), batch))
        bx0, by, bm, bf, bn = (v[idx].to(device) for v in (x0, y, m, f, null))
        bn = bn | (torch.rand(batch, device=device) < COND_DROPOUT)
        t = bridge.sample_timesteps(batch).to(device)
        noise = torch.randn_like(bx0)
        pred = model(bridge.q_sample(bx0, by, t, noise), by, bm, t, bf, bn)
        weight = 1.0 + HOLE_WEIGHT * F.max_pool3d((bm > 0).float(), 3, stride=1, padding=1)
        loss = ((pred - bridge.target(bx0, by, t, noise)).abs() * weight).sum() / (weight.sum() * bx0.shape[1])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1 - decay)
        if step % 50 == 0 or step == steps:
            log.append({"step": step, "loss": round(loss.item(), 4), "seconds": round(time.time() - t1, 1)})
            print(json.dumps(log[-1]), flush=True)
        if step == steps or (save_every and step % save_every == 0):
            saved = save_model(out, ema, make_card(step, log), half=True)
    return saved


def _init_from(model: TextureUNet, folder: Path) -> None:
    """Start from another texture model's weights; a global-conditioning path it lacks starts at zero output."""
    _, state = load_model(folder, "bbdm-texture")
    missing = [k for k in model.state_dict() if k not in state]
    if missing and all(k.startswith("unet.class_embedding.") for k in missing):
        state = dict(state, **{k: v for k, v in model.state_dict().items() if k in missing})
    load_into(model, state, folder)


def _card(out, data, arch, vq_card, bridge, normalizer, gaussian, sources, bank, n_tumor, batch, lr, device, t0,
          init):
    def make(step: int, log: list) -> dict:
        card = {
            "name": out.name, "kind": "bbdm-texture", "version": "0.3.0",
            "description": "Brownian-bridge texture generator in the VQ-GAN latent; synthesis (radiomics tokens) and "
                           "removal (learned null) in one model.",
            "demo": data is None,
            "architecture": arch,
            "latent_channels": vq_card["latent"]["channels"],
            "vqgan": {"name": vq_card["name"], "version": vq_card["version"], "sha256": vq_card["sha256"]},
            "bridge": {"num_steps": bridge.num_steps, "m_min": 0.001, "m_max": 0.999, "max_var": 1.0},
            "sampling": {"default_steps": 20, "eta": 1.0},  # re-check with scripts/benchmark_tumor.py
            "features": normalizer.to_dict(),
            "gaussian": gaussian,
            "fill": FILL,
            "source_prior": MEAN_SD_CONTRAST,
            "condition_dropout": COND_DROPOUT,
            "weights_dtype": "float16",
            "training": {"data": [s[0] for s in sources], "bank": len(bank), "synthesis_samples": n_tumor,
                         "steps": step, "batch": batch, "lr": lr, "device": str(device), "hole_weight": HOLE_WEIGHT,
                         "init": str(init) if init else None,
                         "seconds": round(time.time() - t0), "final": log[-1] if log else None},
        }
        if data is None:
            card["warning"] = ("DEMO MODEL trained for minutes on two sample chest CTs; for trying the software only, "
                               "not for research or clinical use.")
        return card
    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--vqgan", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, default=None, help="continue from this texture model's weights")
    p.add_argument("--save-every", type=int, default=0, help="also save the model every N steps")
    a = p.parse_args()
    card = train(a.vqgan, a.out, a.data, a.samples, a.steps, a.batch, a.lr, a.device, a.seed, a.init, a.save_every)
    print(json.dumps(card["training"], indent=1))


if __name__ == "__main__":
    main()
