"""Train the CTGenerate slice models: the ASCII score model (K adjacent axial slices) and IC-Net.

Both train on axial slices resampled in-plane to the model grid (``size``² pixels at ``spacing_mm``, centred on
each volume's in-plane centre; the slice spacing stays the scan's own) — the grid the pipeline resamples a seed to.

Data (``--data FOLDER``; default: the two pyradiomics sample chest CTs). Layouts found, first match wins:
  TotalSegmentator  <root>/<subject>/ct.nii.gz              (segmentations/ are not read by this step)
  MSD (Decathlon)   <root>/imagesTr/*.nii.gz                 (e.g. Task06_Lung; labelsTr/ are not read)
  flat              <root>/*.nii.gz | *.nii | *.nrrd | *.mha  (one CT per file, e.g. head CT series converted with
                                                             dcm2niix)
  DICOM series      <root>/<series>/*.dcm                    (one series per folder, read with SimpleITK)
Every volume must be axial (its k axis head–foot); others are skipped with a note.

Score model: windows of K consecutive slices ordered foot → head, each volume padded below with one air slice
(the thesis's x⁰, so an unconditional start from air is in the training distribution); DSM loss with
per-channel levels (``sample_training_sigmas``: half the batch conditional, clean known slices); Adam, an EMA of
the weights is what is saved. IC-Net: pairs (previous, current) on its window, the self-supervised contrast
objective (``icnet_loss``).

Run: ``python -m radsynth.train.slices --out radsynth/weights [--data FOLDER] [--score-minutes 7]``
(``scripts/train_slice_demo.sh``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import RadSynthError
from ..geometry import axial_axis
from ..volume import Volume, read_volume

HU_RANGE = (-1024.0, 3071.0)          # the thesis's 12-bit range, mapped onto [−1, 1]
SDE = {"type": "ve", "sigma_min": 0.001, "sigma_max": 68.0}
ICNET_WINDOW = (-150.0, 150.0)
SCORE_ARCH = {"slices": 2, "channels": [16, 32, 64], "attention_levels": [False, False, False],
              "num_res_blocks": 1, "num_head_channels": 16, "norm_num_groups": 8, "sigma_data": 0.5,
              "per_channel_noise": True}
ICNET_ARCH = {"channels": [16, 32, 64]}


def find_volumes(root: Path | str) -> list[Path]:
    """CT volumes under ``root`` in one of the layouts of this module's docstring."""
    root = Path(root)
    if not root.is_dir():
        raise RadSynthError(f"Training data folder not found: {root}")
    found = sorted(root.glob("*/ct.nii.gz"))
    if not found and (root / "imagesTr").is_dir():
        found = sorted(p for p in (root / "imagesTr").glob("*.nii*") if not p.name.startswith("._"))
    if not found:
        found = sorted(p for ext in ("*.nii.gz", "*.nii", "*.nrrd", "*.mha") for p in root.glob(ext))
    if not found:
        found = sorted(d for d in root.iterdir() if d.is_dir() and any(d.glob("*.dcm")))
    if not found:
        raise RadSynthError(f"No CT volumes found in {root}; see radsynth/train/slices.py for the layouts.")
    return found


def sample_volumes() -> list[Path]:
    from ..sample_data import sample_path
    return [Path(sample_path(n, "image")) for n in ("lung1", "lung2")]


def model_stack(volume: Volume, size: int, spacing_mm: float) -> np.ndarray:
    """(N, size, size) HU slices, foot → head, resampled in-plane onto the model grid (shared with the pipeline)."""
    from ..pipelines.generate.slices import to_model_plane, foot_to_head
    array = foot_to_head(volume, volume.array.astype(np.float32))
    return to_model_plane(array, volume.spacing, size, spacing_mm)


def load_stacks(paths: list[Path], size: int, spacing_mm: float, log=print) -> list[np.ndarray]:
    stacks = []
    for path in paths:
        volume = read_volume(path)
        if axial_axis(volume) != 0:
            log(f"skipping {path}: not axial")
            continue
        stacks.append(model_stack(volume, size, spacing_mm))
        log(f"{path.name}: {stacks[-1].shape[0]} slices, {volume.spacing[2]:.2f} mm apart")
    if not stacks:
        raise RadSynthError("None of the training volumes is axial.")
    return stacks


def to_unit(hu: np.ndarray, window=HU_RANGE) -> np.ndarray:
    lo, hi = window
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo) * 2.0 - 1.0).astype(np.float32)


def score_windows(stacks: list[np.ndarray], k: int) -> torch.Tensor:
    """(M, K, H, W) model-unit windows of K consecutive slices, each stack padded below with one air slice."""
    out = []
    for s in stacks:
        u = to_unit(s)
        u = np.concatenate([np.full_like(u[:1], -1.0), u], 0)
        out += [u[i:i + k] for i in range(u.shape[0] - k + 1)]
    return torch.from_numpy(np.stack(out))


def _shift(batch: torch.Tensor, generator: torch.Generator, most: int = 3, fill: float = -1.0,
           labels: Optional[torch.Tensor] = None):
    """Random in-plane translation by up to ``most`` pixels (the same for every slice of a window), air-filled;
    ``labels`` (the windows' organ maps) move with their slices, background-filled, and are returned too."""
    out = torch.full_like(batch, fill)
    out_labels = torch.zeros_like(labels) if labels is not None else None
    h, w = batch.shape[-2:]
    for b in range(batch.shape[0]):
        dy, dx = (int(v) for v in torch.randint(-most, most + 1, (2,), generator=generator))
        ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
        xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
        out[b, :, yd, xd] = batch[b, :, ys, xs]
        if labels is not None:
            out_labels[b, :, yd, xd] = labels[b, :, ys, xs]
    return out if labels is None else (out, out_labels)


def train_score(windows: torch.Tensor, arch: dict, seconds: float, batch: int = 8, lr: float = 1e-3,
                ema_decay: float = 0.995, seed: int = 0, sde: Optional[dict] = None,
                init: Optional[Path] = None, log=print, maps: Optional[torch.Tensor] = None,
                classes: Optional[list[int]] = None, map_dropout: float = 0.0) -> tuple[torch.nn.Module, dict]:
    """DSM training of an ASCII score model on ``windows`` (M, K, H, W). With ``maps`` (M, K, H, W label values
    of ``classes``) it trains an organ model: their one-hot is the condition, dropped (all zeros) for a share
    ``map_dropout`` of the batch so the model also runs unguided. ``init``: a model folder to start from (a slice
    model for an organ model: its first convolution grows zero weights for the map channels)."""
    from ..nets.score_unet import ScoreUNet, class_lut, extend_input, organ_condition
    from ..processes.ve_sde import VESDE, dsm_loss, sample_training_sigmas

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    sde = VESDE.from_card({"sde": sde or SDE})
    net = ScoreUNet(arch, sde.sigma_min, sde.sigma_max)
    if init is not None:   # continue a model's training: same architecture and noise range, its weights
        from safetensors.torch import load_file
        extend_input(net, {k: v.float() for k, v in load_file(str(Path(init) / "weights.safetensors")).items()})
    ema = copy.deepcopy(net).eval()
    opt = torch.optim.Adam(net.parameters(), lr)
    t0, step, losses = time.perf_counter(), 0, []
    lut = class_lut(classes) if maps is not None else None
    while time.perf_counter() - t0 < seconds:
        idx = torch.randint(windows.shape[0], (batch,), generator=g)
        model = net
        if maps is None:
            x0 = _shift(windows[idx], g)
        else:
            x0, lab = _shift(windows[idx], g, labels=maps[idx])
            cond = organ_condition(lab, lut, len(classes))
            keep = (torch.rand(batch, generator=g) >= map_dropout).float().view(-1, 1, 1, 1)
            model = (lambda c: lambda x, s: net(x, s, c))(cond * keep)
        sigma, generated = sample_training_sigmas(sde, batch, arch["slices"], generator=g)
        loss = dsm_loss(model, x0, sde, generator=g, sigma=sigma, generated=generated)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(ema_decay).add_(p, alpha=1 - ema_decay)
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            log(f"score step {step}: loss {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return ema, {"steps": step, "batch": batch, "seconds": round(time.perf_counter() - t0, 1),
                 "final_loss_mean_last_100": round(float(np.mean(losses[-100:])), 4), "lr": lr, "ema": ema_decay}


def icnet_pairs(stacks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    prev, cur = [], []
    for s in stacks:
        u = to_unit(s, ICNET_WINDOW)
        prev += list(u[:-1]) + list(u[1:])     # both neighbours: growth runs up and down
        cur += list(u[1:]) + list(u[:-1])
    return torch.from_numpy(np.stack(prev))[:, None], torch.from_numpy(np.stack(cur))[:, None]


def train_icnet(prev: torch.Tensor, cur: torch.Tensor, arch: dict, seconds: float, batch: int = 8,
                lr: float = 5e-4, seed: int = 0, log=print) -> tuple[torch.nn.Module, dict]:
    from ..nets.icnet import ICNet, icnet_loss

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = ICNet(arch)
    opt = torch.optim.Adam(net.parameters(), lr)
    t0, step, losses = time.perf_counter(), 0, []
    while time.perf_counter() - t0 < seconds:
        idx = torch.randint(cur.shape[0], (batch,), generator=g)
        loss = icnet_loss(net, cur[idx], prev[idx], generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        step += 1
        if step % 100 == 0:
            log(f"icnet step {step}: L1 {np.mean(losses[-100:]):.4f} ({time.perf_counter() - t0:.0f} s)")
    return net.eval(), {"steps": step, "batch": batch, "seconds": round(time.perf_counter() - t0, 1),
                        "final_l1_window_units_last_100": round(float(np.mean(losses[-100:])), 4), "lr": lr}


DEMO_WARNING = ("DEMO MODEL: trained for minutes on a 2-core CPU on the {n} slices of two sample chest CTs, at "
                "{size}x{size} pixels of {mm} mm. It shows the workflow; its slices are blurry and not anatomy you "
                "can rely on. Do not use it for research data or any clinical purpose.")


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "weights")
    ap.add_argument("--data", type=Path, default=None, help="training folder (layouts: module docstring)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--spacing-mm", type=float, default=6.0)
    ap.add_argument("--slices", type=int, default=2, choices=(2, 3), help="K")
    ap.add_argument("--score-minutes", type=float, default=7.0)
    ap.add_argument("--icnet-minutes", type=float, default=2.0)
    ap.add_argument("--sigma-max", type=float, default=SDE["sigma_max"],
                    help="VE-SDE sigma_max (the thesis's 68 is for 512^2 slices)")
    ap.add_argument("--init", type=Path, default=None, help="continue training this slice-score model folder")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--name", default="demo")
    args = ap.parse_args(argv)

    from ..models import save_model

    torch.set_flush_denormal(True)
    paths = find_volumes(args.data) if args.data else sample_volumes()
    stacks = load_stacks(paths, args.size, args.spacing_mm)
    n = sum(s.shape[0] for s in stacks)
    slice_mm = round(float(np.median([read_volume(p).spacing[2] for p in paths])), 3)
    demo = args.data is None
    grid = {"size": args.size, "spacing_mm": args.spacing_mm, "slice_spacing_mm": slice_mm}
    data = {"volumes": [p.name for p in paths], "slices": n, "source": "pyradiomics sample CTs lung1, lung2"
            if demo else str(args.data)}
    warning = DEMO_WARNING.format(n=n, size=args.size, mm=args.spacing_mm)

    arch = dict(SCORE_ARCH, slices=args.slices)
    sde = dict(SDE, sigma_max=args.sigma_max)
    score, score_log = train_score(score_windows(stacks, args.slices), arch, args.score_minutes * 60, sde=sde,
                                   lr=args.lr, init=args.init)
    if args.init is not None:
        before = json.loads((args.init / "card.json").read_text()).get("training", {})
        score_log["continued_from"] = {k: before.get(k) for k in ("steps", "seconds", "lr")}
        score_log["total_seconds"] = round(score_log["seconds"] + float(before.get("seconds") or 0), 1)
        score_log["total_steps"] = score_log["steps"] + int(before.get("steps") or 0)
    score_card = {
        "name": f"{args.name}-slice-score", "kind": "slice-score", "version": "0.1.0", "demo": demo,
        "description": f"ASCII score model (VE-SDE) over K={args.slices} adjacent axial slices; grows a CT slice by "
                       "slice from seed slices or from air (CTGenerate).",
        "warning": warning if demo else "", "architecture": arch, "sde": sde, "window": list(HU_RANGE),
        "grid": grid, "training": {**score_log, "data": data, "script": "scripts/train_slice_demo.sh"},
        "can": "grow chest CT slices at the grid above, either direction, K as trained; sampler fast or pc",
        "cannot": "reproduce real anatomy or fine texture; other body regions; other slice spacings without "
                  "a mismatch warning",
        "licence": "Apache-2.0",
    }
    if args.init is not None and "sampling" in json.loads((args.init / "card.json").read_text()):
        score_card["sampling"] = json.loads((args.init / "card.json").read_text())["sampling"]
    else:   # measured on the demo model: BENCHMARKS.md "CTGenerate slice growth"
        score_card["sampling"] = {"fast_start_sigma": 1.0}
    save_model(args.out / f"{args.name}-slice-score", score, score_card, half=True)
    print(json.dumps({"score": score_log}), flush=True)

    if args.icnet_minutes <= 0:
        return
    prev, cur = icnet_pairs(stacks)
    icnet, ic_log = train_icnet(prev, cur, ICNET_ARCH, args.icnet_minutes * 60)
    ic_card = {
        "name": f"{args.name}-icnet", "kind": "icnet", "version": "0.1.0", "demo": demo,
        "description": "IC-Net: calibrates a generated slice's contrast against its neighbour inside the window "
                       "(moment matching plus a learned correction); pixels outside the window are never changed.",
        "warning": warning if demo else "", "architecture": ICNET_ARCH, "window": list(ICNET_WINDOW),
        "grid": grid, "training": {**ic_log, "data": data, "script": "scripts/train_slice_demo.sh"},
        "can": "undo in-window contrast drift of soft tissue (mu 0.7-1.3)",
        "cannot": "fix structure, air, lung or bone (outside its window)",
        "licence": "Apache-2.0",
    }
    save_model(args.out / f"{args.name}-icnet", icnet, ic_card, half=True)
    print(json.dumps({"icnet": ic_log}))


if __name__ == "__main__":
    main()
