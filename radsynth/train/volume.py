"""Train a whole-volume latent diffusion CT generator (CTGenerate "Whole volume"): autoencoder, then diffusion.

The networks are MONAI's MAISI networks (``AutoencoderKlMaisi``, ``DiffusionModelUNetMaisi``) at the channel counts of
``--scale`` (``demo``: small enough for one CPU thread), so the result is a MAISI-family model folder (kind
``volume-ldm``, built like ``maisi-rflow-ct``) that ``radsynth generate volume`` and
:mod:`radsynth.pipelines.generate.latent` run like a converted NV-Generate-CT checkpoint. Two differences from MAISI, both recorded in the card:

* **Mask conditioning as input channels.** The diffusion UNet takes the latent plus a body and a lung map
  (fractions of each latent voxel, from :func:`radsynth.pipelines.inpaint.auto_map.auto_map` of the training CT);
  in ``mask_dropout`` of the steps both maps are zeroed, which the sampler uses for "no mask" (unguided).
* **Fixed grid.** Every training volume is resampled onto one RAS grid (``size`` voxels of ``spacing`` mm, centred on
  the body), so the model supports that size and spacing; random crops of ``size`` from a slightly larger box
  around the body give the variety two sample CTs lack.

Stage 1, autoencoder: L1 + KL (weight 1e-7, as seed 003's bundle) on random crops, intensities [-1000, 1000] HU ->
[0, 1] (MAISI's CT mapping). The latent scale factor (1 / std of the encoded crops, MAISI's definition) is measured
after stage 1 and stored in the card; stage 2 trains on ``z * scale_factor``.
Stage 2, diffusion: rectified flow (MONAI ``RFlowScheduler``; the UNet predicts x0 - noise, MAISI's target), MSE.

Both stages: AdamW, an exponential moving average of the weights (``torch.optim.swa_utils.AveragedModel``; the EMA
is what is saved), bfloat16 autocast on CUDA, checkpoints (weights, EMA, optimizer, step, data sampler epoch) every
``--checkpoint-every`` steps and at the end, ``--resume`` continues from them. ``torchrun --nproc-per-node N -m
radsynth.train.volume ...`` trains with DistributedDataParallel: each rank draws its own crops
(``DistributedSampler`` over the crop index), rank 0 alone writes checkpoints and the model folder.

Data (``--data FOLDER``; default: the two pyradiomics sample chest CTs), the layouts of
:func:`radsynth.train.slices.find_volumes`:
  TotalSegmentator  <root>/<subject>/ct.nii.gz          (segmentations/ not needed: maps come from the CT)
  MSD (Decathlon)   <root>/imagesTr/*.nii.gz             (e.g. Task07_Pancreas, seed 003's data; labelsTr/ unused)
  flat              <root>/*.nii.gz | *.nii | *.nrrd | *.mha
  DICOM series      <root>/<series>/*.dcm
Volumes must be axial CT in HU.

Run: ``scripts/train_volume_demo.sh`` (demo) or ``python -m radsynth.train.volume --data FOLDER --out DIR ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

from ..errors import RadSynthError
from ..nets import maisi_config as mc

#: radsynth's own whole-volume LDM (MAISI networks + mask channels); converted NV-Generate-CT models are maisi-*-ct
KIND = "volume-ldm"
MASK_CHANNELS = ("body", "lung")
INTENSITY = dict(mc.MAISI_CT_INTENSITY)
#: network sizes; "demo" trains in minutes on one CPU thread, "small" is a start for a GPU
SCALES = {
    "demo": {"ae": {"num_channels": [8, 16, 16], "num_res_blocks": [1, 1, 1], "norm_num_groups": 4},
             "unet": {"num_channels": [16, 32, 64], "attention_levels": [False, False, True],
                      "num_head_channels": [0, 0, 16], "num_res_blocks": 1, "norm_num_groups": 8}},
    "small": {"ae": {"num_channels": [32, 64, 64], "num_res_blocks": [1, 2, 2], "norm_num_groups": 16},
              "unet": {"num_channels": [64, 128, 256], "attention_levels": [False, True, True],
                       "num_head_channels": [0, 32, 32], "num_res_blocks": 2, "norm_num_groups": 32}},
}
SCHEDULER = {"_target_": "monai.networks.schedulers.rectified_flow.RFlowScheduler", "num_train_timesteps": 1000,
             "use_discrete_timesteps": False, "use_timestep_transform": True, "sample_method": "uniform",
             "scale": 1.4}
KL_WEIGHT = 1e-7


def architecture(scale: str, latent_channels: int = 4, mask_channels: int = len(MASK_CHANNELS)) -> dict[str, Any]:
    """A MAISI network config (the layout :func:`maisi_config.parse_network_config` reads) for ``scale``."""
    s = SCALES[scale]
    target = "monai.apps.generation.maisi.networks."
    return {
        "spatial_dims": 3, "image_channels": 1, "latent_channels": latent_channels, "include_body_region": False,
        "autoencoder_def": {
            "_target_": target + "autoencoderkl_maisi.AutoencoderKlMaisi", "spatial_dims": 3, "in_channels": 1,
            "out_channels": 1, "latent_channels": latent_channels, "norm_eps": 1e-6,
            "attention_levels": [False] * len(s["ae"]["num_channels"]), "with_encoder_nonlocal_attn": False,
            "with_decoder_nonlocal_attn": False, "use_checkpointing": False, "use_convtranspose": False,
            "norm_float16": False, "num_splits": 1, "dim_split": 1, **s["ae"]},
        "diffusion_unet_def": {
            "_target_": target + "diffusion_model_unet_maisi.DiffusionModelUNetMaisi", "spatial_dims": 3,
            "in_channels": latent_channels + mask_channels, "out_channels": latent_channels,
            "include_top_region_index_input": False, "include_bottom_region_index_input": False,
            "include_spacing_input": False, "use_flash_attention": False, "resblock_updown": True,
            "include_fc": True, **s["unet"]},
        "noise_scheduler": dict(SCHEDULER),
    }


# --------------------------------------------------------------------------------------------------------- data

def find_cases(root: Optional[Path | str]) -> list[Path]:
    """CT volumes of a training folder (layouts in the module docstring); None: the two sample CTs."""
    from .slices import find_volumes, sample_volumes
    return sample_volumes() if root is None else find_volumes(root)


def ras_grid(center_lps: Sequence[float], size: Sequence[int], spacing: Sequence[float]):
    """A SimpleITK reference grid of ``size`` (x, y, z) voxels in RAS array order centred on ``center_lps``."""
    import SimpleITK as sitk

    ref = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    ref.SetSpacing([float(s) for s in spacing])
    ref.SetDirection((-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    axes = np.diag([-1.0, -1.0, 1.0])
    half = (np.asarray(size, float) - 1) / 2 * np.asarray(spacing, float)
    ref.SetOrigin(tuple(float(v) for v in np.asarray(center_lps, float) - axes @ half))
    return ref


def _resample(image, ref, interpolator, fill: float):
    import SimpleITK as sitk
    res = sitk.Resample(image, ref, sitk.Transform(), interpolator, fill, sitk.sitkFloat32)
    return np.transpose(sitk.GetArrayFromImage(res), (2, 1, 0))      # (z, y, x) -> (x, y, z)


def prepare_case(path: Path | str, size: Sequence[int], spacing: Sequence[float],
                 margin: Sequence[int] = (8, 8, 8)) -> tuple[np.ndarray, np.ndarray]:
    """(model-unit image (1, x, y, z), maps (len(MASK_CHANNELS), x, y, z)) on a RAS grid of ``size + 2 * margin``
    voxels at ``spacing`` centred on the body; crops of ``size`` are drawn from it."""
    import SimpleITK as sitk
    from scipy import ndimage

    from ..geometry import axial_axis
    from ..pipelines.inpaint import labels as lab
    from ..pipelines.inpaint.auto_map import auto_map
    from ..volume import read_volume

    ct = read_volume(path)
    if ct.array.ndim != 3 or axial_axis(ct) != 0:
        raise RadSynthError(f"{path}: not an axial 3D CT volume.")
    amap = auto_map(ct).map
    body = amap.array > 0
    kji = np.argwhere(body)
    if not len(kji):
        raise RadSynthError(f"{path}: no body found (is it a CT in HU?).")
    center = ct.index_to_physical(((kji.min(0) + kji.max(0)) / 2.0)[None])[0]
    big = [int(s) + 2 * int(m) for s, m in zip(size, margin)]
    ref = ras_grid(center, big, spacing)
    # anti-aliasing before decimating 0.6 mm pixels to several mm (sigma ~ 0.4 output voxels)
    sigma = [max(0.4 * float(t) / float(s) - 0.4, 0.0) for t, s in zip(spacing, ct.spacing)]
    smooth = ndimage.gaussian_filter(ct.array.astype(np.float32), sigma[::-1], mode="nearest")
    hu = _resample(ct.with_array(smooth).to_sitk(), ref, sitk.sitkLinear, -1024.0)
    maps = []
    for values in ((v for v in lab.ALL if v != lab.BACKGROUND), (lab.LEFT_LUNG, lab.RIGHT_LUNG)):
        binary = amap.with_array(np.isin(amap.array, list(values)).astype(np.float32))
        maps.append(_resample(binary.to_sitk(), ref, sitk.sitkLinear, 0.0))
    return hu_to_unit(hu)[None], np.stack(maps).astype(np.float32)


def hu_to_unit(hu: np.ndarray) -> np.ndarray:
    lo, hi = INTENSITY["hu_min"], INTENSITY["hu_max"]
    return ((np.clip(hu, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def latent_maps(maps: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, x, y, z) maps at image resolution -> the fraction of each latent voxel they cover (average pooling)."""
    return torch.nn.functional.avg_pool3d(maps.float(), factor)


class CropDataset(torch.utils.data.Dataset):
    """``length`` random crops of ``size`` from (array (C, x, y, z), maps (M, x, y, z)) pairs; crop ``i`` of epoch
    ``e`` is drawn from the seed (seed, e, i), so every rank and every resume draws the same crop for an index."""

    def __init__(self, cases: list[tuple[np.ndarray, np.ndarray]], size: Sequence[int], length: int, seed: int = 0):
        self.cases, self.size, self.length, self.seed, self.epoch = cases, tuple(int(s) for s in size), length, seed, 0

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        array, maps = self.cases[int(rng.integers(len(self.cases)))]
        lo = [int(rng.integers(0, n - s + 1)) for n, s in zip(array.shape[1:], self.size)]
        window = (slice(None), *(slice(a, a + s) for a, s in zip(lo, self.size)))
        return (torch.from_numpy(np.ascontiguousarray(array[window])),
                torch.from_numpy(np.ascontiguousarray(maps[window])))


@torch.no_grad()
def encode_cases(autoencoder: torch.nn.Module, cases: list[tuple[np.ndarray, np.ndarray]], factor: int
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each prepared box encoded once (latent mean) with its maps pooled to the latent grid: stage 2 draws latent
    crops from these instead of encoding every crop (the autoencoder is convolutional; only a box's border
    differs from encoding a crop alone)."""
    device = next(autoencoder.parameters()).device
    out = []
    for image, maps in cases:
        z = autoencoder.encode_stage_2_inputs(torch.from_numpy(image)[None].to(device)).float().cpu()[0]
        out.append((z.numpy(), latent_maps(torch.from_numpy(maps)[None], factor)[0].numpy()))
    return out


# ---------------------------------------------------------------------------------------------- distributed

def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group when started by torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist
        if not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(rank: int) -> torch.device:
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------- training loop

def train_stage(name: str, net: torch.nn.Module, loss_fn: Callable[[torch.nn.Module, Any, Any], torch.Tensor],
                data: CropDataset, *, steps: int, batch: int, lr: float, checkpoint: Path,
                seconds: Optional[float] = None, ema_decay: float = 0.99, checkpoint_every: int = 100,
                resume: bool = False, log: Callable[[str], None] = print) -> tuple[torch.nn.Module, dict]:
    """Train ``net`` on ``data`` for ``steps`` optimizer steps (or until ``seconds``); returns (EMA network, log).

    ``checkpoint`` (a file) holds weights, EMA, optimizer, step and epoch; with ``resume`` training continues from it
    (the step count, the optimizer's moments and the crop sequence carry on)."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    rank, world = _dist()
    device = _device(rank)
    net = net.to(device)
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    step, epoch, losses, spent = 0, 0, [], 0.0
    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=True)
        net.load_state_dict(state["net"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        step, epoch, spent = int(state["step"]), int(state["epoch"]), float(state.get("seconds", 0.0))
        losses = list(state.get("losses", []))
        log(f"{name}: resumed at step {step} from {checkpoint}")
    model = net
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=data.seed)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, sampler=sampler, drop_last=True)

    def save() -> None:
        if rank != 0:
            return
        tmp = checkpoint.with_suffix(".tmp")
        torch.save({"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step,
                    "epoch": epoch, "seconds": spent, "losses": losses}, tmp)
        os.replace(tmp, checkpoint)

    t0, start_step = time.perf_counter(), step
    net.train()
    while step < steps:
        sampler.set_epoch(epoch)
        data.set_epoch(epoch)
        for image, maps in loader:
            with _autocast(device):
                loss = loss_fn(model, image.to(device), maps.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            ema.update_parameters(net)
            step += 1
            losses.append(round(float(loss.detach()), 6))
            elapsed = time.perf_counter() - t0
            if step % 20 == 0 or step == steps:
                log(f"{name}: step {step}/{steps} loss {np.mean(losses[-20:]):.5f} "
                    f"({elapsed / (step - start_step):.2f} s/step)")
            if step % checkpoint_every == 0:
                spent_now, spent = spent, spent + elapsed
                save()
                spent = spent_now
            if step >= steps or (seconds is not None and elapsed >= seconds):
                break
        else:
            epoch += 1
            continue
        break
    spent += time.perf_counter() - t0
    save()
    result = {"steps": step, "steps_this_run": step - start_step, "seconds": round(spent, 1), "batch": batch * world,
              "lr": lr, "ema_decay": ema_decay,
              "final_loss": round(float(np.mean(losses[-50:])), 6) if losses else None,
              "ranks": world, "device": str(device)}
    return ema.module.eval(), result


def autoencoder_loss(model, image, _maps):
    recon, mu, sigma = model(image)
    kl = 0.5 * torch.sum(mu.float() ** 2 + sigma.float() ** 2 - torch.log(sigma.float() ** 2 + 1e-12) - 1,
                         dim=list(range(1, mu.dim()))).mean()
    return torch.nn.functional.l1_loss(recon.float(), image) + KL_WEIGHT * kl


def diffusion_loss(scheduler, scale_factor: float, mask_dropout: float, generator: torch.Generator):
    """The rectified-flow loss on latents ``z * scale_factor`` with the maps as extra channels, zeroed in
    ``mask_dropout`` of the samples (the unguided condition)."""

    def loss(model, z, cond):
        z = z.float() * scale_factor
        keep = (torch.rand(z.shape[0], generator=generator) >= mask_dropout).float().to(z.device)
        cond = cond.float() * keep.view(-1, 1, 1, 1, 1)
        noise = torch.randn(z.shape, generator=generator).to(z.device)
        t = scheduler.sample_timesteps(z)
        noisy = scheduler.add_noise(original_samples=z, noise=noise, timesteps=t)
        out = model(x=torch.cat([noisy, cond], 1), timesteps=t)
        return torch.nn.functional.mse_loss(out.float(), z - noise)

    return loss


def measure_scale_factor(latents: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """1 / std of the encoded training boxes (MAISI's definition; LatentDiffusionInferer's scale_factor)."""
    from ..pipelines.generate.latent import scale_factor_for

    return scale_factor_for(torch.cat([torch.from_numpy(z).flatten() for z, _ in latents]))


# ----------------------------------------------------------------------------------------------------- driver

DEMO_WARNING = ("DEMO MODEL: trained for minutes on one CPU thread on random crops of two sample chest CTs "
                "(4 mm voxels). It shows the workflow; its volumes are blurry chest-like shapes, not anatomy you can "
                "rely on. Do not use it for research data or any clinical purpose.")


def card_for(arch: dict, *, name: str, size: Sequence[int], spacing: Sequence[float], scale_factor: float,
             demo: bool, training: dict, mask_dropout: float, parameters: dict) -> dict:
    sched = mc.scheduler_spec(arch["noise_scheduler"])
    return {
        "name": name, "kind": KIND, "version": "0.1.0", "demo": demo,
        "title": "CTGenerate whole-volume latent diffusion " + ("demo " if demo else "") +
                 f"({'x'.join(map(str, size))} at {'x'.join(f'{s:g}' for s in spacing)} mm)",
        "description": "Latent rectified-flow CT generator (MAISI networks at small channel counts) with its own "
                       "body/lung mask conditioning as extra UNet input channels; trained by radsynth.train.volume.",
        "warning": DEMO_WARNING if demo else "",
        "can": "generate a chest-like CT volume of the grid below in HU, unguided or following a body (and lung) "
               "mask; RFlow sampling in 5-50 steps",
        "cannot": "other sizes or spacings, other body regions, organs beyond body and lungs, fine anatomy or "
                  "texture; a ControlNet (it has none)" if demo else "sizes or spacings other than its grid",
        "licence": "Apache-2.0",
        "architecture": {k: v for k, v in arch.items() if k != "noise_scheduler"},
        "networks": ["autoencoder", "diffusion"], "parameters": parameters,
        "latent": {"scale_factor": float(scale_factor), "channels": int(arch["latent_channels"]),
                   "downsample": mc.downsample_factor(arch)},
        "scheduler": sched,
        "sampling": {"sampler": "rflow", "default_steps": 20, "decode_tile": None, "decode_overlap": 0.4,
                     "decode_mode": "gaussian", "autocast": "bfloat16"},
        "intensity": dict(INTENSITY),
        "conditioning": {"spacing": False, "body_region": False, "class_label": None, "mask": False,
                         "mask_channels": {"labels": list(MASK_CHANNELS), "required": ["body"],
                                           "dropout": mask_dropout, "resolution": "latent fraction"}},
        "grid": {"orientation": "RAS", "size_choices": [[int(size[0])], [int(size[1])], [int(size[2])]],
                 "spacing_range_mm": [[float(s) * 0.999, float(s) * 1.001] for s in spacing],
                 "default_size": [int(s) for s in size], "default_spacing_mm": [float(s) for s in spacing]},
        "training": training,
    }


def untrained_model(out: Path | str, *, scale: str = "demo", size: Sequence[int] = (32, 32, 32),
                    spacing: Sequence[float] = (8.0, 8.0, 8.0), scale_factor: float = 1.0, seed: int = 0,
                    name: str = "test-volume-ldm") -> dict:
    """A model folder with this trainer's card and random weights (tests and benchmarks: every code path of a
    trained model, in a second). MONAI zero-initialises the UNet's output layer; it gets small random values so
    the output depends on the input."""
    from ..models import save_model
    from ..nets.maisi import build_network

    torch.manual_seed(seed)
    arch = architecture(scale)
    parsed = mc.parse_network_config(arch)
    ae = build_network("autoencoder", parsed["autoencoder_def"], "cpu")
    unet = build_network("diffusion", parsed["diffusion_unet_def"], "cpu")
    with torch.no_grad():
        for p in unet.parameters():
            if p.dim() > 1 and not p.any():
                p.normal_(0.0, 0.05)
    counts = {"autoencoder": sum(p.numel() for p in ae.parameters()),
              "diffusion": sum(p.numel() for p in unet.parameters())}
    card = card_for(arch, name=name, size=size, spacing=spacing, scale_factor=scale_factor, demo=False,
                    training={"untrained": True}, mask_dropout=0.2, parameters=counts)
    return save_model(out, torch.nn.ModuleDict({"autoencoder": ae, "diffusion": unet}), card)


def main(argv: Optional[list[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="model folder to write (e.g. radsynth/weights/X)")
    ap.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: OUT.work)")
    ap.add_argument("--data", type=Path, default=None, help="training folder (layouts: module docstring)")
    ap.add_argument("--name", default="demo-volume-ldm")
    ap.add_argument("--scale", choices=sorted(SCALES), default="demo")
    ap.add_argument("--size", type=int, nargs=3, default=[64, 64, 48], metavar=("X", "Y", "Z"))
    ap.add_argument("--spacing", type=float, nargs=3, default=[4.0, 4.0, 4.0], metavar=("X", "Y", "Z"))
    ap.add_argument("--ae-steps", type=int, default=600)
    ap.add_argument("--ae-minutes", type=float, default=None)
    ap.add_argument("--diffusion-steps", type=int, default=1500)
    ap.add_argument("--diffusion-minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=2, help="autoencoder crops per step (per rank)")
    ap.add_argument("--ae-crop", type=int, default=32, help="autoencoder crop side in voxels")
    ap.add_argument("--diffusion-batch", type=int, default=8, help="latent crops per step (per rank)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--mask-dropout", type=float, default=0.2)
    ap.add_argument("--checkpoint-every", type=int, default=100)
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoints in --work")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    from ..models import save_model
    from ..nets.maisi import build_network
    from ..pipelines.generate.latent import make_scheduler

    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    rank, world = _dist()
    log = print if rank == 0 else (lambda *_: None)
    work = args.work or args.out.with_name(args.out.name + ".work")
    work.mkdir(parents=True, exist_ok=True)
    t_data = time.perf_counter()
    paths = find_cases(args.data)
    cases = []
    for p in paths:
        try:
            cases.append(prepare_case(p, args.size, args.spacing))
        except RadSynthError as exc:
            log(f"skipping {p}: {exc}")
    if not cases:
        raise RadSynthError("No usable training volume.")
    log(f"{len(cases)} volumes prepared in {time.perf_counter() - t_data:.1f} s")
    arch = architecture(args.scale)
    parsed = mc.parse_network_config(arch)
    f = mc.downsample_factor(parsed)
    if any(s % mc.size_multiple(parsed) for s in args.size):
        raise RadSynthError(f"--size must be a multiple of {mc.size_multiple(parsed)} along each axis.")
    ae_data = CropDataset(cases, [args.ae_crop] * 3, length=max(64, 32 * len(cases)), seed=args.seed)

    ae = build_network("autoencoder", parsed["autoencoder_def"], "cpu")
    ae, ae_log = train_stage("autoencoder", ae, autoencoder_loss, ae_data, steps=args.ae_steps, batch=args.batch,
                             lr=args.lr, checkpoint=work / "autoencoder.ckpt", checkpoint_every=args.checkpoint_every,
                             seconds=None if args.ae_minutes is None else args.ae_minutes * 60, resume=args.resume,
                             log=log)
    for p in ae.parameters():
        p.requires_grad_(False)
    latents = encode_cases(ae, cases, f)
    scale_factor = measure_scale_factor(latents)
    log(f"latent scale factor {scale_factor:.4f} (1/std of {len(latents)} encoded boxes)")
    sched_spec = mc.scheduler_spec(arch["noise_scheduler"])
    scheduler = make_scheduler(sched_spec, "rflow")
    unet = build_network("diffusion", parsed["diffusion_unet_def"], "cpu")
    # a resumed run draws new noise and timesteps, not the ones of the steps already done
    ckpt = work / "diffusion.ckpt"
    done = (int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
            if args.resume and ckpt.is_file() else 0)
    gen = torch.Generator().manual_seed(args.seed + rank + 7919 * done)
    torch.manual_seed(args.seed + rank + 7919 * done)
    latent_size = [s // f for s in args.size]
    diff_data = CropDataset(latents, latent_size, length=max(64, 32 * len(cases)), seed=args.seed)
    unet, diff_log = train_stage(
        "diffusion", unet, diffusion_loss(scheduler, scale_factor, args.mask_dropout, gen), diff_data,
        steps=args.diffusion_steps, batch=args.diffusion_batch, lr=args.lr, checkpoint=work / "diffusion.ckpt",
        checkpoint_every=args.checkpoint_every, resume=args.resume,
        seconds=None if args.diffusion_minutes is None else args.diffusion_minutes * 60, log=log)
    if rank != 0:
        return
    demo = args.data is None
    training = {"autoencoder": ae_log, "diffusion": diff_log,
                "scale_factor_from": "1/std of the encoded training boxes",
                "data": {"volumes": [Path(p).name for p in paths],
                         "source": "pyradiomics sample CTs lung1, lung2" if demo else str(args.data)},
                "script": "scripts/train_volume_demo.sh", "seed": args.seed,
                "threads": torch.get_num_threads()}
    counts = {"autoencoder": sum(p.numel() for p in ae.parameters()),
              "diffusion": sum(p.numel() for p in unet.parameters())}
    card = card_for(arch, name=args.name, size=args.size, spacing=args.spacing, scale_factor=scale_factor,
                    demo=demo, training=training, mask_dropout=args.mask_dropout, parameters=counts)
    both = torch.nn.ModuleDict({"autoencoder": ae.cpu(), "diffusion": unet.cpu()})
    save_model(args.out, both, card, half=True)
    log(json.dumps({"out": str(args.out), "scale_factor": scale_factor, "autoencoder": ae_log,
                    "diffusion": diff_log}))


if __name__ == "__main__":
    main()
