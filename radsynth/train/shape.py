"""Train the shape GAN (TumorSynth part 2) on frame-normalized tumour masks.

Losses: hinge GAN with a projection discriminator that scores each real mask with its *own* features (the
reference code paired them with another subject's), a matching-aware term in which real masks with rotated
features count as fake, and two "obey the condition" losses on the generator's soft mask:
  * analytic: sphericity, elongation, flatness, axis lengths and area computed differentiably
    (``soft_shape_features``; > 0.99 correlated with pyradiomics on training masks);
  * learned: a small CNN regressor predicts all conditioning features (it is the only signal for the maximum
    diameters). It is pre-trained on real masks and keeps training on generated masks with their *measured*
    features, so the generator cannot satisfy it by exploiting its blind spots.

python -m radsynth.train.shape --out DIR [--data ROOT] [--steps N] [--minutes M]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from ..conditioning import fit_gaussian
from ..device import pick_device
from ..models import save_model
from ..nets.shape_gan import (ANALYTIC_FEATURES, DEFAULT_SHAPE_GAN, FeatureRegressor, ShapeDiscriminator,
                              ShapeGenerator, soft_area_volume, soft_shape_features)
from ..shape_features import fast_shape_features
from ..pipelines.shape import COND_FEATURES, FRAME_FILL, FRAME_VERSION, KIND, SLIDER_FEATURES
from ..radiomics import FeatureNormalizer
from .data import cases_from_folder, sample_cases
from .shape_data import build_dataset, frame_features, real_lesions

WARNING = ("DEMO MODEL: trained for minutes on a CPU from procedural blobs and two sample lung tumours. "
           "It shows the workflow; its shapes are not validated tumour morphology. Do not use it for research "
           "data or any clinical purpose.")


@dataclasses.dataclass
class ShapeConfig:
    steps: int = 2000
    minutes: float = 13.0          # wall-time cap for everything (data, pre-training, GAN)
    batch: int = 8
    n_procedural: int = 2400
    n_real: int = 400
    lr_g: float = 3e-4
    lr_d: float = 3e-4
    reg_weight: float = 2.0
    analytic_weight: float = 4.0
    match_weight: float = 0.5
    regressor_pretrain: int = 150
    ema: float = 0.99
    n_val: int = 48
    eval_every: int = 100
    seed: int = 0


def calibrate(softs: np.ndarray, n: int = 200) -> tuple[float, float]:
    """(area_scale, volume_scale) mapping the soft area/volume of frame masks onto pyradiomics' mesh values."""
    area, vol = [], []
    for s in softs[:n]:
        f = fast_shape_features(s >= 128, (1.0, 1.0, 1.0))
        a, v = soft_area_volume(torch.from_numpy(s[None, None]).float() / 255)
        area.append(f["shape_SurfaceArea"] / a.item())
        vol.append(f["shape_MeshVolume"] / v.item())
    return float(np.median(area)), float(np.median(vol))


def _measure(soft: torch.Tensor, normalizer: FeatureNormalizer):
    """Normalized features measured on each soft mask (None where the mask is empty)."""
    rows = [frame_features(s[0].numpy()) for s in soft.detach().float().cpu()]
    keep = [i for i, r in enumerate(rows) if r is not None]
    if not keep:
        return None, None
    return keep, torch.from_numpy(np.stack([normalizer.normalize(rows[i]) for i in keep]))


@torch.no_grad()
def evaluate(gen: ShapeGenerator, cond: torch.Tensor, normalizer: FeatureNormalizer, seed: int) -> dict[str, float]:
    """Spearman ρ between requested and achieved value of each feature over held-out conditions."""
    z = torch.randn(len(cond), gen.z_dim, generator=torch.Generator().manual_seed(seed)).to(cond.device)
    soft = torch.sigmoid(gen(z, cond))
    keep, achieved = _measure(soft, normalizer)
    if keep is None or len(keep) < 3:
        return {n: float("nan") for n in COND_FEATURES}
    req = cond[keep].cpu().numpy()
    return {n: float(spearmanr(req[:, i], achieved[:, i].numpy())[0]) for i, n in enumerate(COND_FEATURES)}


def train(out: Path, data_root: Path | None = None, cfg: ShapeConfig = ShapeConfig(), device: str = "auto",
          log=print) -> dict:
    t0 = time.perf_counter()
    dev = pick_device(device)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    cases = cases_from_folder(data_root) if data_root else sample_cases()
    lesions = real_lesions(cases)
    softs, rows, tags = build_dataset(lesions, cfg.n_procedural, cfg.n_real, rng, DEFAULT_SHAPE_GAN["grid"], log)
    normalizer = dataclasses.replace(FeatureNormalizer.fit(COND_FEATURES, rows), params_version=FRAME_VERSION)
    feats = np.stack([normalizer.normalize(r) for r in rows])
    area_scale, volume_scale = calibrate(softs[rng.permutation(len(softs))])
    an_idx = torch.tensor([COND_FEATURES.index(n) for n in ANALYTIC_FEATURES])
    an_mean = torch.tensor(normalizer.mean[an_idx.numpy()], dtype=torch.float32)
    an_std = torch.tensor(normalizer.std[an_idx.numpy()], dtype=torch.float32)
    t_data = time.perf_counter() - t0
    log(f"shape data: {len(softs)} masks in {t_data:.0f} s")

    order = rng.permutation(len(softs))
    val, tr = order[:cfg.n_val], order[cfg.n_val:]
    x_all = torch.from_numpy(softs[:, None])               # uint8, scaled per batch
    c_all = torch.from_numpy(feats)
    val_cond = c_all[val].to(dev)
    an_idx, an_mean, an_std = an_idx.to(dev), an_mean.to(dev), an_std.to(dev)

    arch = dict(DEFAULT_SHAPE_GAN)
    nf = len(COND_FEATURES)
    gen, disc, reg = ShapeGenerator(nf, arch).to(dev), ShapeDiscriminator(nf, arch).to(dev), FeatureRegressor(nf).to(dev)
    ema = copy.deepcopy(gen).eval().requires_grad_(False)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr_g, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.99))
    opt_r = torch.optim.Adam(reg.parameters(), lr=1e-3)

    def batch():
        idx = torch.from_numpy(rng.choice(tr, cfg.batch))
        x = x_all[idx].float().div_(255)
        # flips leave every conditioning feature unchanged (axis permutations would swap the 2D diameters)
        dims = [d for d in (2, 3, 4) if rng.random() < 0.5]
        return (x.flip(dims) if dims else x).to(dev), c_all[idx].to(dev)

    for _ in range(cfg.regressor_pretrain):
        x, c = batch()
        loss_r = F.mse_loss(reg(x), c)
        opt_r.zero_grad(set_to_none=True)
        loss_r.backward()
        opt_r.step()
    log(f"regressor pre-trained: mse {loss_r.item():.3f}")

    history: list[dict] = []
    last: dict = {}
    step = 0
    while step < cfg.steps and time.perf_counter() - t0 < cfg.minutes * 60:
        step += 1
        x, c = batch()
        z = torch.randn(len(c), gen.z_dim, device=dev)
        fake = torch.sigmoid(gen(z, c))

        wrong = c.roll(1, 0)   # another sample's features: a real mask with them must be judged fake
        loss_d = (F.relu(1 - disc(x, c)).mean() + F.relu(1 + disc(fake.detach(), c)).mean()
                  + cfg.match_weight * F.relu(1 + disc(x, wrong)).mean())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        adv = -disc(fake, c).mean()
        loss_reg = F.mse_loss(reg(fake), c)
        analytic = (soft_shape_features(fake, area_scale, volume_scale) - an_mean) / an_std
        loss_an = F.mse_loss(analytic, c[:, an_idx])
        loss_g = adv + cfg.reg_weight * loss_reg + cfg.analytic_weight * loss_an
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        keep, measured = _measure(fake[: cfg.batch // 2], normalizer)
        xr, cr = x, c
        if keep is not None:
            xr = torch.cat([x, fake[keep].detach()])
            cr = torch.cat([c, measured.to(dev)])
        loss_r = F.mse_loss(reg(xr), cr)
        opt_r.zero_grad(set_to_none=True)
        loss_r.backward()
        opt_r.step()

        decay = 0.0 if step < 50 else cfg.ema
        with torch.no_grad():
            for pe, pg in zip(ema.parameters(), gen.parameters()):
                pe.lerp_(pg, 1 - decay)
        last = {"step": step, "d": loss_d.item(), "g_adv": adv.item(), "g_reg": loss_reg.item(), "g_an": loss_an.item(), "r": loss_r.item()}
        if step % cfg.eval_every == 0:
            rho = evaluate(ema, val_cond, normalizer, cfg.seed)
            last.update(elapsed_s=round(time.perf_counter() - t0, 1), rho_mean=float(np.nanmean(list(rho.values()))),
                        rho_sphericity=rho["shape_Sphericity"])
            history.append(dict(last))
            log(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in last.items()))

    rho = evaluate(ema.cpu(), val_cond.cpu(), normalizer, cfg.seed)
    card = {
        "name": Path(out).name, "kind": KIND, "version": "0.1.0", "demo": True, "warning": WARNING,
        "architecture": arch, "grid": arch["grid"],
        "frame": {"fill": FRAME_FILL, "definition": "mask centroid at the grid centre; farthest voxel at fill/2 of "
                  "the grid; features measured at 1 unit per voxel, lengths / V^(1/3), area / V^(2/3)"},
        "features": normalizer.to_dict(), "feature_names": list(COND_FEATURES),
        "slider_features": list(SLIDER_FEATURES),
        "gaussian": fit_gaussian(feats),
        "training": {
            "data": {"procedural": int(sum(t == "procedural" for t in tags)),
                     "real": int(sum(t != "procedural" for t in tags)), "real_lesions": [n for n, _, _ in lesions],
                     "source": str(data_root) if data_root else "pyradiomics sample CTs lung1, lung2"},
            "config": dataclasses.asdict(cfg), "steps": step, "wall_time_s": round(time.perf_counter() - t0, 1),
            "data_time_s": round(t_data, 1), "soft_feature_scales": {"area": area_scale, "volume": volume_scale},
            "final_losses": last, "history": history, "device": str(dev),
            "torch_threads": torch.get_num_threads()},
        "evaluation": {"heldout_spearman": {k: round(v, 4) for k, v in rho.items()}, "n": cfg.n_val},
    }
    card = save_model(out, ema, card)
    log(f"saved {out}: {step} steps in {card['training']['wall_time_s']:.0f} s; held-out Spearman "
        + ", ".join(f"{k.removeprefix('shape_')}={v:.2f}" for k, v in rho.items()))
    return card


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m radsynth.train.shape", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--data", type=Path, help="label root (see radsynth/train/data.py); default: sample tumours")
    p.add_argument("--steps", type=int, default=ShapeConfig.steps)
    p.add_argument("--minutes", type=float, default=ShapeConfig.minutes, help="wall-time cap, data included")
    p.add_argument("--batch", type=int, default=ShapeConfig.batch)
    p.add_argument("--samples", type=int, default=ShapeConfig.n_procedural, help="procedural shapes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for torch")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    cfg = ShapeConfig(steps=a.steps, minutes=a.minutes, batch=a.batch, n_procedural=a.samples, seed=a.seed)
    train(a.out, a.data, cfg, a.device)


if __name__ == "__main__":
    main()
