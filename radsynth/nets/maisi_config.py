"""What a whole-volume latent model's card says, read without torch: network config, supported grid, memory.

Three things live here because hosts (the Slicer panel, the CLI's worker client) need them before any network is
loaded:

- :func:`parse_network_config` reads a MAISI network config in the published NV-Generate-CT layout
  (``configs/config_network_rflow.json``: top-level scalars, ``autoencoder_def``, ``diffusion_unet_def``,
  ``controlnet_def``, ``noise_scheduler``, with ``"@name"`` references). Only MONAI's MAISI classes and schedulers
  are accepted as ``_target_`` and no ``"$"`` expression is evaluated: a config file is data, never code.
- :func:`check_request` says whether an output size, spacing and body region fit the card's ``grid``.
- :func:`estimate_memory` / :func:`plan_memory` say how many bytes a request needs on a device and, when it does
  not fit, what would (a smaller decoding tile, a smaller volume).

Sizes and spacings are (x, y, z) in the model's array order; for MAISI that is RAS (x runs to the patient's right,
y anterior, z superior) and z is the axial direction (128–768 voxels).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from ..errors import InvalidOptionError, ModelError
from ..numbers import finite_number

# ------------------------------------------------------------------------------------------------ network config

#: network part -> (config key, MONAI class name); the class must live under monai.
PARTS = {
    "autoencoder": ("autoencoder_def", "AutoencoderKlMaisi"),
    "diffusion": ("diffusion_unet_def", "DiffusionModelUNetMaisi"),
    "controlnet": ("controlnet_def", "ControlNetMaisi"),
}
SCHEDULERS = {"RFlowScheduler": "rflow", "DDPMScheduler": "ddpm", "DDIMScheduler": "ddpm"}
#: constructor arguments that change how a network runs, not which weights it has (set per device at build time)
RUNTIME_ARGS = ("use_flash_attention", "use_checkpointing", "norm_float16", "num_splits", "dim_split",
                "print_info", "save_mem")
#: MAISI body regions (scripts/find_masks.py of NV-Generate-CTMR): index of the one-hot region vector
BODY_REGIONS = {"head": 0, "chest": 1, "thorax": 1, "abdomen": 2, "pelvis": 3, "lower": 3}


def _target_class(target: Any, where: str, allowed: Sequence[str]) -> str:
    if not isinstance(target, str) or not target.startswith("monai.") or target.rsplit(".", 1)[-1] not in allowed:
        raise ModelError(f"The network config's {where} names {target!r}; radsynth builds only MONAI's "
                         f"{', '.join(allowed)} from a config (it never imports other code named there).")
    return target.rsplit(".", 1)[-1]


def _resolve(value: Any, top: Mapping[str, Any], where: str) -> Any:
    """``"@name"`` and ``"$@name"`` become the top-level value ``name``; any other ``"$..."`` is refused."""
    if isinstance(value, dict):
        return {k: _resolve(v, top, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, top, where) for v in value]
    if isinstance(value, str) and value.startswith(("@", "$")):
        name = value[2:] if value.startswith("$@") else value[1:] if value.startswith("@") else None
        if name is None or not name.isidentifier():
            raise ModelError(f"The network config's {where} is the expression {value!r}; radsynth does not "
                             "evaluate expressions in configs (write the value itself).")
        if name not in top or isinstance(top[name], (dict, list)):
            raise ModelError(f"The network config's {where} refers to {value!r}, which is not a top-level "
                             "number or flag of the config.")
        return top[name]
    return value


def parse_network_config(source: Path | str | Mapping[str, Any]) -> dict[str, Any]:
    """The network config as the card keeps it: references resolved, targets checked, the parts radsynth uses.

    Returns ``{"spatial_dims", "image_channels", "latent_channels", "autoencoder_def", "diffusion_unet_def",
    ["controlnet_def"], "noise_scheduler"}``; mask-generation entries of the published file are left out.
    """
    if isinstance(source, Mapping):
        raw, label = dict(source), "the network config"
    else:
        path = Path(source)
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ModelError(f"Could not read the network config {path} ({exc.strerror or exc}).") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"The network config {path} is not valid JSON ({exc}).") from exc
        label = str(path)
    if not isinstance(raw, dict):
        raise ModelError(f"{label} is not a JSON object.")
    top = {k: v for k, v in raw.items() if not isinstance(v, (dict, list))}
    out: dict[str, Any] = {k: top[k] for k in ("spatial_dims", "image_channels", "latent_channels") if k in top}
    if out.get("spatial_dims", 3) != 3:
        raise ModelError(f"{label} describes {out['spatial_dims']}D networks; whole-volume generation needs 3D.")
    for part, (key, cls) in PARTS.items():
        if key not in raw:
            if part == "controlnet":
                continue
            raise ModelError(f"{label} has no {key!r} entry; is it a MAISI network config "
                             "(like NV-Generate-CT's config_network_rflow.json)?")
        definition = _resolve(raw[key], top, key)
        if not isinstance(definition, dict):
            raise ModelError(f"{label}: {key} is not an object.")
        _target_class(definition.get("_target_"), f"{key}._target_", (cls,))
        out[key] = definition
    if "noise_scheduler" not in raw:
        raise ModelError(f"{label} has no 'noise_scheduler' entry (the scheduler the diffusion model was trained "
                         "with decides how it can be sampled).")
    sched = _resolve(raw["noise_scheduler"], top, "noise_scheduler")
    _target_class(sched.get("_target_") if isinstance(sched, dict) else None, "noise_scheduler._target_",
                  tuple(SCHEDULERS))
    out["noise_scheduler"] = sched
    out.setdefault("latent_channels", out["autoencoder_def"].get("latent_channels"))
    return out


def scheduler_spec(noise_scheduler: Mapping[str, Any]) -> dict[str, Any]:
    """The card's ``scheduler``: ``{"type": "rflow" | "ddpm", **constructor arguments}``."""
    cls = _target_class(noise_scheduler.get("_target_"), "noise_scheduler._target_", tuple(SCHEDULERS))
    return {"type": SCHEDULERS[cls], **{k: v for k, v in noise_scheduler.items() if k != "_target_"}}


def network_args(definition: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in definition.items() if k != "_target_"}


def downsample_factor(architecture: Mapping[str, Any]) -> int:
    """Image voxels per latent voxel along each axis: the autoencoder halves the grid once per level but the last."""
    return 2 ** (len(architecture["autoencoder_def"]["num_channels"]) - 1)


def latent_multiple(architecture: Mapping[str, Any]) -> int:
    """The latent grid must be divisible by this for the diffusion UNet's down/up path to line up."""
    return 2 ** (len(architecture["diffusion_unet_def"]["num_channels"]) - 1)


def size_multiple(architecture: Mapping[str, Any]) -> int:
    return downsample_factor(architecture) * latent_multiple(architecture)


# ------------------------------------------------------------------------------------------------------- the grid

#: NV-Generate-CT's limits (check_input_ct in scripts/sample_mask.py of NV-Generate-CTMR)
MAISI_CT_GRID = {
    "orientation": "RAS",
    "size_choices": [[256, 384, 512], [256, 384, 512], [128, 256, 384, 512, 640, 768]],
    "equal_size_axes": [0, 1],
    "spacing_range_mm": [[0.5, 3.0], [0.5, 3.0], [0.5, 5.0]],
    "equal_spacing_axes": [0, 1],
    "min_fov_mm": [256.0, 256.0, None],
    "default_size": [256, 256, 256],
    "default_spacing_mm": [1.5, 1.5, 2.0],
}
#: NV-Generate-CT's CT mapping: the autoencoder works in [0, 1] for [-1000, 1000] HU, clipped
MAISI_CT_INTENSITY = {"hu_min": -1000.0, "hu_max": 1000.0, "model_min": 0.0, "model_max": 1.0, "clip": True}


def _triple(values: Any, what: str, kind: type) -> tuple:
    try:
        items = tuple(values)
    except TypeError:
        raise InvalidOptionError(f"The {what} must be three numbers (x, y, z), got {values!r}.") from None
    if len(items) != 3:
        raise InvalidOptionError(f"The {what} must be three numbers (x, y, z), got {len(items)}.")
    numbers = tuple(finite_number(v, f"Each {what} value") for v in items)
    if kind is int:
        if any(v != int(v) or v < 1 for v in numbers):
            raise InvalidOptionError(f"The {what} must be whole numbers of voxels, got {values!r}.")
        return tuple(int(v) for v in numbers)
    if any(v <= 0 for v in numbers):
        raise InvalidOptionError(f"The {what} must be positive, got {values!r}.")
    return numbers


def _fmt(v: float) -> str:
    return f"{v:g}"


def check_request(card: Mapping[str, Any], size: Any, spacing: Any,
                  body_region: Optional[Sequence[str]] = None) -> tuple[tuple[int, int, int],
                                                                       tuple[float, float, float],
                                                                       Optional[tuple[int, int]]]:
    """(size, spacing, (top, bottom) region indices or None) after checking them against the card's ``grid``;
    InvalidOptionError names what the model supports."""
    grid = card.get("grid", {})
    size = _triple(size, "output size", int)
    spacing = _triple(spacing, "spacing", float)
    axes = "xyz"
    multiple = size_multiple(card["architecture"])
    bad = [axes[i] for i in range(3) if size[i] % multiple]
    if bad:
        raise InvalidOptionError(f"The output size {'×'.join(map(str, size))} does not fit this model: every side "
                                 f"must be a multiple of {multiple} voxels (not {', '.join(bad)}).")
    choices = grid.get("size_choices")
    if choices:
        for i in range(3):
            if size[i] not in choices[i]:
                raise InvalidOptionError(
                    f"The output size {'×'.join(map(str, size))} is not one this model supports: "
                    + "; ".join(f"{axes[j]} one of {', '.join(map(str, choices[j]))}" for j in range(3)) + ".")
    for key, what, values in (("equal_size_axes", "size", size), ("equal_spacing_axes", "spacing", spacing)):
        same = grid.get(key)
        if same and len({values[i] for i in same}) > 1:
            raise InvalidOptionError(f"This model needs the same {what} along {' and '.join(axes[i] for i in same)}"
                                     f" (got {', '.join(_fmt(values[i]) for i in same)}).")
    for i, (lo, hi) in enumerate(grid.get("spacing_range_mm") or ()):
        if not lo <= spacing[i] <= hi:
            raise InvalidOptionError(f"The spacing along {axes[i]} must be between {_fmt(lo)} and {_fmt(hi)} mm "
                                     f"for this model (got {_fmt(spacing[i])} mm).")
    for i, fov in enumerate(grid.get("min_fov_mm") or ()):
        if fov is not None and size[i] * spacing[i] < fov - 1e-6:
            raise InvalidOptionError(
                f"The field of view along {axes[i]} would be {size[i]} × {_fmt(spacing[i])} mm = "
                f"{_fmt(size[i] * spacing[i])} mm; this model needs at least {_fmt(fov)} mm (a larger spacing or "
                "size). Size and spacing together decide how much of the body the volume shows.")
    regions = None
    if card.get("conditioning", {}).get("body_region"):
        if not body_region:
            raise InvalidOptionError("This model needs a body region (top and bottom, e.g. chest, abdomen); "
                                     f"known: {', '.join(BODY_REGIONS)}.")
        names = [body_region] if isinstance(body_region, str) else list(body_region)
        unknown = [r for r in names if str(r).lower() not in BODY_REGIONS]
        if unknown:
            raise InvalidOptionError(f"Unknown body region {', '.join(map(str, unknown))}; "
                                     f"known: {', '.join(BODY_REGIONS)}.")
        index = [BODY_REGIONS[str(r).lower()] for r in names]
        regions = (min(index), max(index))
    return size, spacing, regions


# ------------------------------------------------------------------------------------------------------ memory

GIB = 1024 ** 3
#: live full-size tensors of the decoder at its largest level (block input kept for the residual, norm output,
#: activation, conv output), plus the norm's float32 copy unless the config asks for float16 (MaisiGroupNorm3D
#: casts). CUDA: fits NV-Generate-CT's published peaks within about ±20 % (docs/ctgenerate-volume.md). CPU:
#: measured 210-250 B per output voxel above 64³ for a 16-channel top level with num_splits 2
#: (scripts/benchmark_latent.py), i.e. 3 float32 copies plus the norm's.
DECODER_LIVE = {"cuda": 4, "cpu": 3}
#: allocator pools, library workspaces and first-call buffers (~120 MiB measured on CPU for the tiny networks)
OVERHEAD = {"cuda": 512 * 1024 ** 2, "cpu": 128 * 1024 ** 2}
#: live tensors of a UNet block (norm, activation, conv, residual) on its concatenated input
UNET_LIVE = 4
#: CUDA's caching allocator keeps freed blocks, so its peak is raised by this fraction; on CPU large blocks go
#: back to the system (the CPU constants above are measured peaks already)
FRAGMENTATION = {"cuda": 0.25, "cpu": 0.0}
MIN_TILE = 16


def _prod(values: Sequence[int]) -> int:
    return int(math.prod(int(v) for v in values))


def _per_level(value: Any, levels: int) -> list[int]:
    return [int(value)] * levels if isinstance(value, (int, float)) else [int(v) for v in value]


def _down_path(definition: Mapping[str, Any], voxels: float) -> tuple[float, list[float]]:
    """Elements kept for skip connections on a UNet's way down, and each level's voxel count."""
    ch = [int(c) for c in definition["num_channels"]]
    n = _per_level(definition.get("num_res_blocks", 2), len(ch))
    v = [voxels / 8 ** i for i in range(len(ch))]
    kept = ch[0] * v[0] + sum(n[i] * ch[i] * v[i] for i in range(len(ch)))
    kept += sum(ch[i] * v[i + 1] for i in range(len(ch) - 1))
    return kept, v


def _attention_elements(definition: Mapping[str, Any], v: list[float], flash: bool) -> float:
    ch = [int(c) for c in definition["num_channels"]]
    heads_ch = _per_level(definition.get("num_head_channels", 8), len(ch))
    worst = 0.0
    for i, attn in enumerate(definition.get("attention_levels", [])):
        if not attn:
            continue
        qkv = 4 * ch[i] * v[i]
        # without a fused kernel the (heads, N, N) score matrix and its softmax are materialised
        scores = 0 if flash else 2 * (ch[i] // max(1, heads_ch[i])) * v[i] ** 2
        worst = max(worst, qkv + scores)
    return worst


def unet_step_bytes(definition: Mapping[str, Any], latent_voxels: float, elem: int, flash: bool) -> float:
    kept, v = _down_path(definition, latent_voxels)
    ch = [int(c) for c in definition["num_channels"]]
    concat = [(ch[i] + (ch[i + 1] if i + 1 < len(ch) else ch[i])) * v[i] for i in range(len(ch))]
    return elem * (kept + UNET_LIVE * max(concat) + _attention_elements(definition, v, flash))


def controlnet_step_bytes(definition: Mapping[str, Any], latent_voxels: float, image_voxels: float, elem: int,
                          flash: bool) -> tuple[float, float]:
    """(bytes alive while the UNet runs: residuals + the conditioning input, peak inside the ControlNet)."""
    kept, v = _down_path(definition, latent_voxels)
    ch = [int(c) for c in definition["num_channels"]]
    cond_in = int(definition.get("conditioning_embedding_in_channels", 1)) * image_voxels
    emb = [int(c) for c in definition.get("conditioning_embedding_num_channels", [16])]
    embedding = max(3 * c * image_voxels / 8 ** j for j, c in enumerate(emb))
    residuals = kept
    inside = kept + UNET_LIVE * 2 * max(ch[i] * v[i] for i in range(len(ch))) + _attention_elements(
        definition, v, flash)
    return elem * (residuals + cond_in), elem * max(inside, embedding)


def decoder_bytes(definition: Mapping[str, Any], tile_latent_voxels: float, elem: int, cuda: bool) -> float:
    """The decoder's peak: its widest tensor at each level (the upsampled input of a level's first block has the
    coarser level's channels) times the live copies of it."""
    ch = [int(c) for c in reversed(definition["num_channels"])]
    worst = 0.0
    for j in range(len(ch)):
        c_in = max(ch[j], ch[j - 1] if j else ch[j])
        worst = max(worst, c_in * tile_latent_voxels * 8 ** j)
    norm_elem = 2 if (cuda and definition.get("norm_float16")) else 4
    return worst * (DECODER_LIVE["cuda" if cuda else "cpu"] * elem + norm_elem)


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a request needs on one device. ``tile`` is the latent decoding window (None: decoded whole)."""
    device: str
    weights: float
    diffusion: float
    decoding: float
    host_output: float          # the whole output on the host (CPU RAM), whatever the device
    tile: Optional[tuple[int, int, int]]

    @property
    def device_total(self) -> float:
        peak = self.weights + max(self.diffusion, self.decoding)
        return (peak * (1 + FRAGMENTATION.get(self.device, 0.25)) + OVERHEAD.get(self.device, 0)
                + (self.host_output if self.device == "cpu" else 0.0))

    def describe(self) -> str:
        tile = "decoded whole" if self.tile is None else f"decoded in {'×'.join(map(str, self.tile))} latent tiles"
        return (f"{gib(self.device_total)} ({gib(self.weights)} weights, {gib(self.diffusion)} per diffusion step, "
                f"{gib(self.decoding)} decoding, {tile})")


def gib(n: float) -> str:
    """Bytes as people read them on a device's spec sheet (decimal GB / MB)."""
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def estimate_memory(architecture: Mapping[str, Any], size: Sequence[int], device: str, weights_bytes: float,
                    tile: Optional[Sequence[int]] = None, controlnet: bool = False, batch: int = 1,
                    autocast: bool = True) -> MemoryEstimate:
    """Peak bytes for generating ``size`` (x, y, z image voxels) on ``device`` ("cuda" or "cpu").

    A diffusion step holds the UNet's skip tensors, one block's working tensors and, without a fused attention
    kernel, the attention score matrices (quadratic in the tokens of the attention levels); a ControlNet adds its
    residuals and its image-resolution conditioning. Decoding one tile holds the decoder's largest level a few
    times over. ``weights_bytes`` is what the loaded networks occupy. Constants are named at the top of this
    section; ``scripts/benchmark_latent.py`` prints this estimate beside measured peaks.
    """
    cuda = device == "cuda"
    elem = 2 if (cuda and autocast) else 4
    f = downsample_factor(architecture)
    latent = [int(s) // f for s in size]
    latent_voxels, image_voxels = float(_prod(latent)), float(_prod(size))
    unet = architecture["diffusion_unet_def"]
    flash = cuda and bool(unet.get("use_flash_attention"))
    diffusion = batch * unet_step_bytes(unet, latent_voxels, elem, flash)
    if controlnet and "controlnet_def" in architecture:
        alive, inside = controlnet_step_bytes(architecture["controlnet_def"], latent_voxels, image_voxels, elem,
                                              flash)
        diffusion = batch * alive + max(diffusion, batch * inside)
    latent_state = 4 * 4 * int(architecture.get("latent_channels", 4)) * latent_voxels   # x, noise, output, step
    diffusion += latent_state
    tile_t = None if tile is None else tuple(min(int(t), l) for t, l in zip(tile, latent))
    if tile_t is not None and tile_t == tuple(latent):
        tile_t = None
    tile_voxels = latent_voxels if tile_t is None else float(_prod(tile_t))
    decoding = decoder_bytes(architecture["autoencoder_def"], tile_voxels, elem, cuda)
    # a tiled decode blends into a float32 output and weight map; a whole decode returns one output tensor
    host_output = image_voxels * (4 * 2 if tile_t is not None else 4) + image_voxels * 2   # + the int16 HU copy
    if tile_t is not None:
        decoding += 3 * 4 * tile_voxels * f ** 3     # the tile's output, its blending weights, their product
    return MemoryEstimate(device, float(weights_bytes), diffusion, decoding, host_output, tile_t)


def tile_candidates(latent: Sequence[int], minimum: int = MIN_TILE) -> list[Optional[tuple[int, int, int]]]:
    """Decoding windows from largest (None: whole) to smallest: cubes of multiples of 8 clipped to the latent."""
    out: list[Optional[tuple[int, int, int]]] = [None]
    for t in range((max(latent) // 8) * 8, minimum - 1, -8):
        tile = tuple(min(t, l) for l in latent)
        if tile != tuple(latent) and tile not in out:
            out.append(tile)
    return out


def plan_memory(estimate: Callable[[Sequence[int], Optional[tuple]], MemoryEstimate], size: Sequence[int],
                downsample: int, available: float, smaller_sizes: Sequence[Sequence[int]] = (),
                tile: Optional[Sequence[int]] = None, device_label: str = "this device") -> MemoryEstimate:
    """The estimate with the largest decoding tile that fits in ``available`` bytes (``tile`` given: only that).

    Refuses with an InvalidOptionError naming the need and what would fit: a smaller tile at this size when only
    decoding is too large, else the largest of ``smaller_sizes`` that fits.
    """
    latent = [int(s) // downsample for s in size]
    tiles = [tuple(int(t) for t in tile)] if tile is not None else tile_candidates(latent)
    estimates = [estimate(size, t) for t in tiles]
    for e in estimates:
        if e.device_total <= available:
            return e
    need = estimates[0]
    text = (f"Generating {'×'.join(map(str, size))} needs about {need.describe()} on {device_label}, but only "
            f"{gib(available)} is available.")
    hints = []
    if tile is not None:
        fits_auto = next((e for e in (estimate(size, t) for t in tile_candidates(latent))
                          if e.device_total <= available), None)
        if fits_auto is not None:
            how = ("whole decoding" if fits_auto.tile is None
                   else "decoding tiles of " + "×".join(map(str, fits_auto.tile)))
            hints.append(f"the same size with {how} ({gib(fits_auto.device_total)})")
    elif estimates[-1].tile is not None:
        smallest = estimates[-1]
        text += (f" Even the smallest decoding tile ({'×'.join(map(str, smallest.tile))} latent voxels) "
                 f"needs {gib(smallest.device_total)}.")
    for s in sorted(smaller_sizes, key=_prod, reverse=True):
        if _prod(s) >= _prod(size):
            continue
        lat = [int(v) // downsample for v in s]
        fit = next((e for e in (estimate(s, t) for t in tile_candidates(lat)) if e.device_total <= available), None)
        if fit is not None:
            hints.append(f"{'×'.join(map(str, s))} voxels ({gib(fit.device_total)})")
            break
    text += (" What would fit: " + "; or ".join(hints) + ".") if hints else (
        " Nothing this model can generate fits; free memory or use a device with more.")
    raise InvalidOptionError(text)


def smaller_sizes(card: Mapping[str, Any], size: Sequence[int]) -> list[tuple[int, int, int]]:
    """Sizes the card allows that are smaller than ``size``, for "what would fit" (keeping equal axes equal)."""
    grid = card.get("grid", {})
    multiple = size_multiple(card["architecture"])
    choices = grid.get("size_choices") or [
        [s for s in range(multiple, int(size[i]) + 1, multiple)] for i in range(3)]
    same = grid.get("equal_size_axes") or []
    out = []
    for x in choices[0]:
        for y in choices[1]:
            for z in choices[2]:
                s = (int(x), int(y), int(z))
                if same and len({s[i] for i in same}) > 1:
                    continue
                if all(s[i] <= size[i] for i in range(3)) and s != tuple(size):
                    out.append(s)
    return out


# ------------------------------------------------------------------------------------------------ example configs

def example_config(scale: str = "published", scheduler: str = "rflow") -> dict[str, Any]:
    """A MAISI network config in the published layout: "published" is NV-Generate-CT's config_network_rflow.json
    (or _ddpm.json's scheduler and flags) as released; "tiny" has the same structure at small channel counts
    (tests, CPU benchmarks). Networks built from either have random weights until a checkpoint is loaded."""
    ddpm = scheduler == "ddpm"
    if scale == "published":
        ae = {"num_channels": [64, 128, 256], "num_res_blocks": [2, 2, 2], "norm_num_groups": 32,
              "num_splits": 8 if ddpm else 4}
        unet = {"num_channels": [64, 128, 256, 512], "num_head_channels": [0, 0, 32, 32], "num_res_blocks": 2}
        cn_emb = [8, 32, 64]
    elif scale == "tiny":
        ae = {"num_channels": [8, 16, 16], "num_res_blocks": [1, 1, 1], "norm_num_groups": 4, "num_splits": 2}
        unet = {"num_channels": [8, 16, 16, 32], "num_head_channels": [0, 0, 8, 8], "num_res_blocks": 1,
                "norm_num_groups": 8}
        cn_emb = [8, 8, 8]
    else:
        raise ValueError(f"unknown example scale {scale!r}")
    target = "monai.apps.generation.maisi.networks."
    shared = {"spatial_dims": "@spatial_dims", "in_channels": "@latent_channels",
              "attention_levels": [False, False, True, True], "use_flash_attention": True,
              "resblock_updown": not ddpm, "include_fc": not ddpm, **unet}
    if not ddpm:
        shared["num_class_embeds"] = 128
    sched = ({"_target_": "monai.networks.schedulers.ddpm.DDPMScheduler", "num_train_timesteps": 1000,
              "beta_start": 0.0015, "beta_end": 0.0195, "schedule": "scaled_linear_beta", "clip_sample": False}
             if ddpm else
             {"_target_": "monai.networks.schedulers.rectified_flow.RFlowScheduler", "num_train_timesteps": 1000,
              "use_discrete_timesteps": False, "use_timestep_transform": True, "sample_method": "uniform",
              "scale": 1.4})
    return {
        "spatial_dims": 3, "image_channels": 1, "latent_channels": 4, "include_body_region": ddpm,
        "autoencoder_def": {
            "_target_": target + "autoencoderkl_maisi.AutoencoderKlMaisi", "spatial_dims": "@spatial_dims",
            "in_channels": "@image_channels", "out_channels": "@image_channels",
            "latent_channels": "@latent_channels", "norm_eps": 1e-06, "attention_levels": [False, False, False],
            "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False, "use_checkpointing": False,
            "use_convtranspose": False, "norm_float16": True, "dim_split": 1, **ae},
        "diffusion_unet_def": {
            "_target_": target + "diffusion_model_unet_maisi.DiffusionModelUNetMaisi",
            "out_channels": "@latent_channels", "include_top_region_index_input": "@include_body_region",
            "include_bottom_region_index_input": "@include_body_region", "include_spacing_input": True, **shared},
        "controlnet_def": {
            "_target_": target + "controlnet_maisi.ControlNetMaisi", "conditioning_embedding_in_channels": 8,
            "conditioning_embedding_num_channels": cn_emb, **shared},
        "noise_scheduler": sched,
    }
