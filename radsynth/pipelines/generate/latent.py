"""Whole-volume latent diffusion: noise → denoised latent → decoded image → CT volume in HU with the asked geometry.

Works on any loaded model with ``autoencoder`` (``decode_stage_2_outputs``), ``diffusion`` (the UNet), optional
``controlnet`` and a ``card`` (see :mod:`radsynth.nets.maisi`); the card says how to sample and decode:

- ``latent.scale_factor``: the diffusion model works on ``z * scale_factor`` (unit variance); decoding undoes it.
  Seed 003's bundle decoded without dividing, which is why that is a function here and a test.
- ``scheduler``: what the UNet was trained with. Rectified flow (velocity) samples with :class:`RFlowScheduler`;
  DDPM (noise prediction) with DDPM itself or DDIM in fewer steps.
- ``sampling``: default steps, decoding window and overlap, autocast precision.
- ``intensity`` / ``grid``: the model's value range ↔ HU, and the sizes/spacings it supports.

Decoding a large volume whole needs the decoder's largest feature map at full resolution; MONAI's
sliding-window inference decodes latent tiles and blends their outputs with Gaussian weights instead, which bounds
the decoder's memory by the tile. The tile is the largest that fits the device (:func:`plan`), so whole decoding
is used whenever it fits. The decoder normalises each tile with its own group-norm statistics, so tiled decoding
is close to, not equal to, whole decoding; the Gaussian blending hides the seams (``docs/ctgenerate-volume.md``).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ...errors import InvalidOptionError, ModelError
from ...progress import CancelToken, ProgressFn, StagedProgress
from ...result import Result
from ...volume import Volume
from ...nets import maisi_config as mc

OPERATION = "generate-volume"
SAMPLERS = {"rflow": ("rflow",), "ddpm": ("ddpm", "ddim")}
#: LPS direction of an array axis that runs toward each anatomical side
_TOWARD = {"R": (-1, 0, 0), "L": (1, 0, 0), "A": (0, -1, 0), "P": (0, 1, 0), "S": (0, 0, 1), "I": (0, 0, -1)}


# ------------------------------------------------------------------------------------------------ latent scaling

def scale_latent(z: torch.Tensor, factor: float) -> torch.Tensor:
    """Autoencoder latent → diffusion space (unit variance when ``factor`` = 1/std of training latents)."""
    return z * factor


def unscale_latent(z: torch.Tensor, factor: float) -> torch.Tensor:
    """Diffusion space → autoencoder latent; always before decoding."""
    return z / factor


def scale_factor_for(latents: torch.Tensor) -> float:
    """The factor a trainer records in the card: 1 / std of encoded training volumes (as MAISI computes it)."""
    return float(1.0 / latents.float().std())


# ------------------------------------------------------------------------------------------------- schedulers

def make_scheduler(spec: dict, sampler: str):
    """The MONAI scheduler that samples a UNet trained with ``spec`` (the card's ``scheduler``) by ``sampler``."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

    trained = spec.get("type")
    allowed = SAMPLERS.get(trained)
    if allowed is None:
        raise ModelError(f"The model card names an unknown training scheduler {trained!r}.")
    if sampler not in allowed:
        raise InvalidOptionError(f"This model was trained with {trained}; it samples with "
                                 f"{' or '.join(allowed)}, not {sampler!r}.")
    args = {k: v for k, v in spec.items() if k != "type"}
    if sampler == "rflow":
        keep = ("num_train_timesteps", "use_discrete_timesteps", "sample_method", "loc", "scale",
                "use_timestep_transform", "transform_scale", "steps_offset", "base_img_size_numel", "spatial_dim")
        return RFlowScheduler(**{k: v for k, v in args.items() if k in keep})
    common = {k: v for k, v in args.items() if k in ("num_train_timesteps", "schedule", "beta_start", "beta_end",
                                                      "clip_sample", "prediction_type")}
    if sampler == "ddpm":
        return DDPMScheduler(**common, **{k: v for k, v in args.items() if k == "variance_type"})
    return DDIMScheduler(**common)


def _timesteps(scheduler, steps: int, latent_shape: Sequence[int]):
    from monai.networks.schedulers import RFlowScheduler

    if isinstance(scheduler, RFlowScheduler):
        # the timestep shift depends on the latent's size, as MAISI samples
        scheduler.set_timesteps(num_inference_steps=steps, input_img_size_numel=int(np.prod(latent_shape)))
    else:
        scheduler.set_timesteps(num_inference_steps=steps)
    ts = scheduler.timesteps
    return list(zip(ts, torch.cat((ts[1:], torch.tensor([0], dtype=ts.dtype)))))


def _autocast(device: torch.device, card: dict):
    if device.type != "cuda":
        return contextlib.nullcontext()
    wanted = card.get("sampling", {}).get("autocast", "bfloat16")
    dtype = torch.float16 if wanted == "float16" or not torch.cuda.is_bf16_supported() else torch.bfloat16
    return torch.autocast("cuda", dtype=dtype)


# ------------------------------------------------------------------------------------------------- conditioning

def _conditions(model: Any, spacing: Sequence[float], regions: Optional[tuple[int, int]], device: torch.device,
                batch: int = 1) -> dict[str, torch.Tensor]:
    """The UNet's extra inputs, as MAISI feeds them: spacing × 100, one-hot body regions × 100, a class label."""
    cond = model.card.get("conditioning", {})
    out: dict[str, torch.Tensor] = {}
    if cond.get("spacing"):
        out["spacing_tensor"] = torch.tensor([list(spacing)] * batch, dtype=torch.float32, device=device) * 1e2
    if cond.get("body_region"):
        if regions is None:
            raise InvalidOptionError("This model needs a body region.")
        eye = torch.eye(4, dtype=torch.float32, device=device) * 1e2
        out["top_region_index_tensor"] = eye[regions[0]].expand(batch, 4)
        out["bottom_region_index_tensor"] = eye[regions[1]].expand(batch, 4)
    if cond.get("class_label") is not None:
        out["class_labels"] = torch.full((batch,), int(cond["class_label"]), dtype=torch.long, device=device)
    return out


def mask_channel_labels(card: dict) -> tuple[str, ...]:
    """The maps a model with its own mask conditioning takes as extra UNet input channels (``conditioning.
    mask_channels.labels``, e.g. body, lung); empty for a MAISI model (ControlNet or none)."""
    spec = card.get("conditioning", {}).get("mask_channels") or {}
    return tuple(spec.get("labels") or ())


def map_condition(maps: Optional[np.ndarray], card: dict, latent_shape: Sequence[int]) -> Optional[torch.Tensor]:
    """(1, C, *latent_shape) extra UNet channels for a mask-channel model: ``maps`` ((C, x, y, z) at image
    resolution, values 0..1, in the card's label order) averaged onto the latent grid; zeros (the condition the
    model was trained with under mask dropout) when ``maps`` is None. None for a model without mask channels."""
    labels = mask_channel_labels(card)
    if not labels:
        if maps is not None:
            raise InvalidOptionError("This model takes no mask channels.")
        return None
    if maps is None:
        return torch.zeros((1, len(labels), *latent_shape), dtype=torch.float32)
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4 or maps.shape[0] != len(labels):
        raise InvalidOptionError(f"The mask maps must be {len(labels)} channels ({', '.join(labels)}) of a 3D grid; "
                                 f"got shape {maps.shape}.")
    factor = maps.shape[1] // int(latent_shape[0])
    if factor < 1 or tuple(s // factor for s in maps.shape[1:]) != tuple(latent_shape):
        raise InvalidOptionError(f"The mask maps ({'×'.join(map(str, maps.shape[1:]))} voxels) do not match the "
                                 f"output grid.")
    return torch.nn.functional.avg_pool3d(torch.from_numpy(maps)[None], factor)


def label_condition(labels: np.ndarray, bits: int = 8) -> torch.Tensor:
    """(x, y, z) integer labels → (1, bits, x, y, z) bit planes: MAISI's ControlNet input (``binarize_labels``)."""
    labels = np.asarray(labels)
    if labels.ndim != 3 or labels.dtype.kind not in "iub":
        raise InvalidOptionError("The organ label map must be a 3D array of integer labels.")
    if labels.size and (labels.min() < 0 or labels.max() >= 2 ** bits):
        raise InvalidOptionError(f"Organ labels must be between 0 and {2 ** bits - 1}.")
    t = torch.from_numpy(labels.astype(np.int64))
    planes = (t.unsqueeze(0) >> torch.arange(bits).view(bits, 1, 1, 1)) & 1
    return planes.unsqueeze(0).to(torch.float32)


# ------------------------------------------------------------------------------------------------------ sampling

def initial_noise(shape: Sequence[int], seed: int, device: torch.device) -> torch.Tensor:
    """Gaussian noise drawn on the CPU from ``seed``: the same seed gives the same volume on any device."""
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32).to(device)


@torch.no_grad()
def sample_latent(model: Any, latent_shape: Sequence[int], *, steps: int, sampler: str, seed: int,
                  spacing: Sequence[float], regions: Optional[tuple[int, int]] = None,
                  control: Optional[torch.Tensor] = None, maps: Optional[torch.Tensor] = None, eta: float = 0.0,
                  progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """A denoised latent in diffusion space (scaled), shape (1, C, *latent_shape), float32 on the model's device.

    ``control``: ControlNet conditioning at image resolution (:func:`label_condition`); needs a model with one.
    ``maps``: a mask-channel model's extra input channels at the latent grid (:func:`map_condition`), concatenated
    to the latent at every step. Cancel is checked and progress reported once per step.
    """
    device = model.device
    card = model.card
    scheduler = make_scheduler(card["scheduler"], sampler)
    channels = int(card["latent"]["channels"])
    x = initial_noise((1, channels, *latent_shape), seed, device)
    cond = _conditions(model, spacing, regions, device)
    if control is not None:
        if model.controlnet is None:
            raise InvalidOptionError("This model has no ControlNet, so it cannot follow an organ mask.")
        control = control.to(device)
    if maps is not None:
        maps = maps.to(device)
    plan = _timesteps(scheduler, steps, latent_shape)
    noise_gen = torch.Generator(device="cpu").manual_seed(int(seed) + 1)
    with _autocast(device, card):
        for i, (t, next_t) in enumerate(plan):
            if cancel is not None:
                cancel.check()
            timestep = torch.tensor([float(t)], device=device)
            extra: dict[str, Any] = {}
            if control is not None:
                ctrl_in = {"class_labels": cond["class_labels"]} if "class_labels" in cond else {}
                down, mid = model.controlnet(x=x, timesteps=timestep, controlnet_cond=control, **ctrl_in)
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            net_in = x if maps is None else torch.cat([x, maps], 1)
            out = model.diffusion(x=net_in, timesteps=timestep, **cond, **extra).float()
            if sampler == "rflow":
                x, _ = scheduler.step(out, t, x, next_t)
            elif sampler == "ddim":
                x, _ = scheduler.step(out, int(t), x, eta=eta, generator=noise_gen)
            else:
                x, _ = scheduler.step(out, int(t), x, generator=noise_gen)
            x = x.float()
            if progress is not None:
                progress((i + 1) / len(plan), "diffusion")
    return x


def _tile_count(latent: Sequence[int], tile: Sequence[int], overlap: float) -> int:
    n = 1
    for size, roi in zip(latent, tile):
        step = max(1, int(roi * (1 - overlap)))
        n *= 1 if roi >= size else math.ceil((size - roi) / step) + 1
    return n


def blend_weights(shape: Sequence[int], sigma_scale: float = 0.125, device: torch.device | str = "cpu",
                  mode: str = "gaussian") -> torch.Tensor:
    """(1, 1, *shape) blending weights for one decoded tile: a product of per-axis Gaussians (sigma =
    ``sigma_scale`` × the tile's side) at output resolution, or ones for ``mode`` "constant".

    MONAI's own map is built at the latent tile size, repeated ×4 by nearest interpolation and clamped at 1e-3
    as a whole; where a face of the volume is covered by one tile only its weight falls under that clamp, so
    tiles overlapping along the other axes are averaged equally (the border-affected one too). A separable map
    with no clamp keeps their ratio everywhere; float32 holds the smallest product (~4e-11 at three corners).
    """
    if mode == "constant":
        return torch.ones((1, 1, *shape), device=device)
    w = torch.ones((), dtype=torch.float64)
    for n in shape:
        x = torch.arange(n, dtype=torch.float64) - (n - 1) / 2
        g = torch.exp(-0.5 * (x / (sigma_scale * n)) ** 2)
        w = w.unsqueeze(-1) * g
    return w.to(torch.float32).to(device)[None, None]


@torch.no_grad()
def decode_latent(model: Any, z: torch.Tensor, *, tile: Optional[Sequence[int]] = None, overlap: float = 0.4,
                  mode: str = "gaussian", sigma_scale: float = 0.125, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelToken] = None) -> torch.Tensor:
    """Decode a diffusion-space latent (undoing the scale factor) to the model's intensity range, on the CPU.

    ``tile`` (latent voxels per axis) decodes window by window with MONAI's sliding-window inference: windows
    overlap by ``overlap``, each output is weighted by :func:`blend_weights` and the weighted sum normalised on
    the CPU, so the device holds one window at a time. None, or a tile covering the latent, decodes it whole.
    """
    from monai.inferers.utils import sliding_window_inference

    device = model.device
    latent = unscale_latent(z.to(device), float(model.card["latent"]["scale_factor"]))
    spatial = tuple(latent.shape[2:])
    tile = None if tile is None else tuple(min(int(t), s) for t, s in zip(tile, spatial))
    with _autocast(device, model.card):
        if tile is None or tile == spatial:
            if cancel is not None:
                cancel.check()
            image = model.autoencoder.decode_stage_2_outputs(latent).float().cpu()
            if progress is not None:
                progress(1.0, "decoding")
            return image
        total = _tile_count(spatial, tile, overlap)
        done = [0]
        weights: dict[tuple, torch.Tensor] = {}

        def decode_tile(window: torch.Tensor) -> torch.Tensor:
            if cancel is not None:
                cancel.check()
            out = model.autoencoder.decode_stage_2_outputs(window).float()
            done[0] += 1
            if progress is not None:
                progress(min(1.0, done[0] / total), "decoding")
            return out

        def weigh(outputs, _window, _monai_map):
            shape = tuple(outputs[0].shape[2:])
            if shape not in weights:
                weights[shape] = blend_weights(shape, sigma_scale, outputs[0].device, mode)
            return outputs, weights[shape]

        return sliding_window_inference(latent, list(tile), 1, decode_tile, overlap=overlap, mode="constant",
                                        sw_device=device, device=torch.device("cpu"), process_fn=weigh).float()


def to_hu(image: np.ndarray, intensity: dict) -> np.ndarray:
    """Model intensities → HU (the inverse of the card's window), clipped to it when the card says so; int16."""
    lo, hi = float(intensity["model_min"]), float(intensity["model_max"])
    a, b = float(intensity["hu_min"]), float(intensity["hu_max"])
    x = np.asarray(image, dtype=np.float32)
    if intensity.get("clip", True):
        x = np.clip(x, lo, hi)
    hu = (x - lo) / (hi - lo) * (b - a) + a
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)


def to_volume(hu_xyz: np.ndarray, spacing: Sequence[float], orientation: str = "RAS",
              center_lps: Optional[Sequence[float]] = None) -> Volume:
    """An (x, y, z) array in the model's axis order → a Volume (LPS, (k, j, i) array) centred on ``center_lps``
    (default: the origin)."""
    if len(orientation) != 3 or any(c not in _TOWARD for c in orientation):
        raise ModelError(f"The model card's grid orientation {orientation!r} is not three of R/L, A/P, S/I.")
    axes = np.array([_TOWARD[c] for c in orientation], dtype=float).T        # column i: direction of array axis i
    size = np.array(hu_xyz.shape, dtype=float)
    half = (size - 1) / 2 * np.asarray(spacing, dtype=float)
    origin = -(axes @ half) + (np.zeros(3) if center_lps is None else np.asarray(center_lps, dtype=float))
    return Volume(np.ascontiguousarray(np.transpose(hu_xyz, (2, 1, 0))), tuple(float(v) for v in origin),
                  tuple(float(s) for s in spacing), tuple(float(v) for v in axes.flatten()))


# ------------------------------------------------------------------------------------------------------- memory

def available_memory(device: torch.device) -> float:
    """Bytes free for this job: the CUDA device's free memory, or the host's available RAM."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return float(free)
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    return float(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _weights_bytes(model: Any) -> float:
    if hasattr(model, "parameter_bytes"):
        return float(model.parameter_bytes())
    nets = [n for n in (model.autoencoder, model.diffusion, getattr(model, "controlnet", None)) if n is not None]
    return float(sum(p.numel() * p.element_size() for n in nets for p in n.parameters()))


def plan(model: Any, size: Sequence[int], *, tile: Optional[Sequence[int]] = None, control: bool = False,
         available: Optional[float] = None) -> mc.MemoryEstimate:
    """The memory estimate (with the decoding tile to use) for ``size``, or an InvalidOptionError saying what it
    would need and what fits. ``available`` (bytes) replaces the device's free memory."""
    device = model.device
    card = model.card
    arch = card["architecture"]
    weights = _weights_bytes(model)
    cuda = device.type == "cuda"

    def estimate(s: Sequence[int], t: Optional[tuple]) -> mc.MemoryEstimate:
        return mc.estimate_memory(arch, s, device.type, weights, tile=t, controlnet=control, autocast=cuda)

    free = available_memory(device) if available is None else float(available)
    label = (f"{device} ({torch.cuda.get_device_name(device)})" if cuda and available is None
             else str(device) if cuda else "this computer's memory")
    return mc.plan_memory(estimate, size, mc.downsample_factor(arch), free, mc.smaller_sizes(card, size),
                          tile=tile, device_label=label)


# ------------------------------------------------------------------------------------------------------ generate

def generate_volume(model: Any, size: Optional[Sequence[int]] = None, spacing: Optional[Sequence[float]] = None,
                    *, steps: Optional[int] = None, sampler: Optional[str] = None, seed: int = 0,
                    body_region: Optional[Sequence[str]] = None, eta: float = 0.0,
                    labels: Optional[np.ndarray] = None, maps: Optional[np.ndarray] = None,
                    tile: Optional[Sequence[int]] = None, center_lps: Optional[Sequence[float]] = None,
                    available: Optional[float] = None, progress: Optional[ProgressFn] = None,
                    cancel: Optional[CancelToken] = None) -> Result:
    """Generate one CT volume of ``size`` (x, y, z voxels) at ``spacing`` (mm) in HU; its Result has no mask.

    Everything that can be refused (size, spacing, body region, sampler, steps, memory) is checked before the
    first network call. ``labels`` ((x, y, z) organ labels in the model's label set) makes a ControlNet model
    follow them; ``maps`` ((C, x, y, z) fractions in the card's ``mask_channels`` order) does the same for a model
    with its own mask channels (None: unguided). ``tile`` fixes the latent decoding window; by default the largest
    that fits is used.
    """
    t0 = time.perf_counter()
    card = model.card
    grid = card.get("grid", {})
    size = grid.get("default_size") if size is None else size
    spacing = grid.get("default_spacing_mm") if spacing is None else spacing
    if size is None or spacing is None:
        raise InvalidOptionError("Give an output size and spacing; the model card has no default.")
    size, spacing, regions = mc.check_request(card, size, spacing, body_region)
    sampling = card.get("sampling", {})
    sampler = sampler or sampling.get("sampler") or ("rflow" if card["scheduler"]["type"] == "rflow" else "ddim")
    train_steps = int(card["scheduler"].get("num_train_timesteps", 1000))
    steps = int(steps or sampling.get("default_steps") or 30)
    if not 1 <= steps <= train_steps:
        raise InvalidOptionError(f"The steps must be between 1 and {train_steps} for this model (got {steps}).")
    make_scheduler(card["scheduler"], sampler)          # refuses a sampler the model was not trained for
    control = None
    if labels is not None:
        if getattr(model, "controlnet", None) is None:
            raise InvalidOptionError("This model has no ControlNet, so it cannot follow an organ mask.")
        if tuple(np.shape(labels)) != tuple(size):
            raise InvalidOptionError(f"The organ label map is {'×'.join(map(str, np.shape(labels)))} voxels; the "
                                     f"output is {'×'.join(map(str, size))}.")
        control = label_condition(labels)
    f = mc.downsample_factor(card["architecture"])
    latent_shape = tuple(s // f for s in size)
    if maps is not None and tuple(np.shape(maps)[1:]) != tuple(size):
        raise InvalidOptionError(f"The mask maps are {'×'.join(map(str, np.shape(maps)[1:]))} voxels; the output is "
                                 f"{'×'.join(map(str, size))}.")
    map_cond = map_condition(maps, card, latent_shape)
    memory = plan(model, size, tile=tile, control=control is not None, available=available)
    stages = StagedProgress(progress, _stage_weights(card["architecture"], size, steps, memory.tile), cancel)
    t1 = time.perf_counter()
    z = sample_latent(model, latent_shape, steps=steps, sampler=sampler, seed=seed, spacing=spacing,
                      regions=regions, control=control, maps=map_cond, eta=eta, progress=stages.sub("diffusion"),
                      cancel=cancel)
    t2 = time.perf_counter()
    image = decode_latent(model, z, tile=memory.tile, overlap=float(sampling.get("decode_overlap", 0.4)),
                          mode=sampling.get("decode_mode", "gaussian"), progress=stages.sub("decoding"),
                          cancel=cancel)
    t3 = time.perf_counter()
    hu = to_hu(image[0, 0].numpy(), card["intensity"])
    volume = to_volume(hu, spacing, grid.get("orientation", "RAS"), center_lps)
    volume.mark_synthetic(f"radsynth generate volume ({card['name']} {card['version']}, {sampler} {steps} steps, "
                          f"seed {seed})")
    stages.done()
    warnings = []
    if card.get("demo"):
        warnings.append(card.get("warning") or "Demo model: trained briefly on a few volumes; for trying the "
                        "workflow, not for research or clinical use.")
    if sampler == "ddim" and sampling.get("sampler") == "ddpm":
        warnings.append(f"This model was published for DDPM sampling with {sampling.get('default_steps')} steps; "
                        f"DDIM with {steps} steps is faster but its quality was not validated.")
    if memory.tile is not None:
        warnings.append(f"Decoded in {'×'.join(map(str, memory.tile))} latent tiles to fit the device's memory; "
                        "tiles are blended, which can leave faint seams.")
    settings = {"size": list(size), "spacing_mm": list(spacing), "fov_mm": [s * p for s, p in zip(size, spacing)],
                "steps": steps, "sampler": sampler, "seed": int(seed), "eta": eta,
                "body_region": list(body_region) if body_region else None, "follows_labels": control is not None,
                "follows_maps": maps is not None, "latent_scale_factor": float(card["latent"]["scale_factor"]),
                "decode_tile": list(memory.tile) if memory.tile else None, "device": str(model.device),
                "memory_estimate_bytes": round(memory.device_total)}
    return Result(OPERATION, volume, timings={"checks": t1 - t0, "diffusion": t2 - t1, "decoding": t3 - t2,
                                              "total": time.perf_counter() - t0},
                  models=dict(model.versions), settings=settings, warnings=warnings)


def _stage_weights(arch: dict, size: Sequence[int], steps: int, tile: Optional[tuple]) -> dict[str, float]:
    """Relative run time of the two stages from convolution work (so the overall bar and its ETA move evenly)."""
    f = mc.downsample_factor(arch)
    latent = float(np.prod([s // f for s in size]))
    unet = arch["diffusion_unet_def"]
    ch = [int(c) for c in unet["num_channels"]]
    unet_work = sum(c * c * latent / 8 ** i for i, c in enumerate(ch))
    dec = [int(c) for c in reversed(arch["autoencoder_def"]["num_channels"])]
    dec_work = sum(c * c * latent * 8 ** j for j, c in enumerate(dec))
    overlap_cost = 1.0 if tile is None else 2.0
    return {"diffusion": steps * unet_work, "decoding": dec_work * overlap_cost}

