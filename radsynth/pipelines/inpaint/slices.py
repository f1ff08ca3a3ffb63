"""Slice-wise region fill: a 2D diffusion model fills a 3D region one axial slice at a time, each slice conditioned
on its already generated neighbour, then the result is pasted back inside the region only.

Steps, as TumorSynth's region operations (``radsynth.region``):

1. crop a box around the region at the model's in-plane spacing and the CT's own slice positions (the box's slices
   are the CT's slices, so no slice is interpolated and "neighbour" means the adjacent real slice), HU → [-1, 1]
   with the card's window;
2. the region to generate is the mask grown by ``margin_mm`` + ``feather_mm`` in-plane: the model fills it all,
   so the feathered band holds generated tissue to blend with;
3. slices in order (``direction`` "up": foot → head, "down": head → foot; "auto": from the end whose real bounding
   slice looks most like the tissue around the region, :func:`start_end`); the first is conditioned on the real
   slice just outside the region, each next one on the slice generated before it;
4. :func:`radsynth.region.paste`: full replacement within mask + margin, a linear blend over the feather, the
   model's change (not its raw output) where it is small; every voxel farther away is bit-identical to the input.

The filler is any :class:`SliceFiller`: the Palette-style mask-conditioned network (:func:`palette_filler`),
RePaint over an unconditional slice model (:func:`repaint_filler`), or SDM rendering a label map
(:func:`sdm_filler`).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Optional, Protocol

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage

from ...errors import InvalidImageError, InvalidMaskError, RadSynthError
from ...geometry import axial_axis
from ...progress import CancelToken, ProgressFn, span
from ...region import Region, RegionSpec, blend_weight, crop_grid, extract, mask_center_and_extent, paste
from ...samplers import ddim, repaint
from ...samplers.guidance import classifier_free
from ...volume import Volume, check_ct, mask_on_grid
from . import DIRECTION

MARGIN_MM = 2.0
FEATHER_MM = 3.0
DIRECTIONS = DIRECTION.choices
#: tissue kept around a region on each side, as in training (an 80 mm crop around lesions up to 55 mm)
CONTEXT_MM = 12.0
#: crops grow in steps the UNet's downsampling divides; at most this many times the trained crop (time and memory)
CROP_MULTIPLE = 8
MAX_CROP_FACTOR = 4


class SliceFiller(Protocol):
    """Fills one slice: ``known`` (1, 1, H, W) model units, ``mask`` (1, 1, H, W) 1 = generate, ``neighbour`` the
    adjacent slice (or None for a model without that input), ``k`` the slice's index in the box. Returns the slice
    with the known pixels unchanged."""
    evaluations: int

    def __call__(self, k: int, known: torch.Tensor, mask: torch.Tensor, neighbour: Optional[torch.Tensor],
                 generator: torch.Generator, progress: Optional[ProgressFn], cancel: Optional[CancelToken]
                 ) -> torch.Tensor: ...


@dataclasses.dataclass
class SliceModelSpec:
    """What a slice model's card says about its input: in-plane size and spacing, and the HU window."""
    size: tuple[int, int]            # (i, j) pixels
    spacing: tuple[float, float]     # (i, j) mm
    window: tuple[float, float]      # HU mapped to [-1, 1]

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> "SliceModelSpec":
        r = card["region"]
        return cls(tuple(int(v) for v in r["size"][:2]), tuple(float(v) for v in r["spacing"][:2]),
                   tuple(float(v) for v in r["window"]))

    def box(self, slices: int, slice_mm: float) -> RegionSpec:
        return RegionSpec((*self.size, slices), (*self.spacing, slice_mm), self.window)

    def fitted(self, extent_mm: np.ndarray, reach_mm: float) -> "SliceModelSpec":
        """This spec, or one with a larger crop when the region plus ``reach_mm`` and ``CONTEXT_MM`` of tissue on
        each side does not fit: the slice networks are convolutional, so a larger crop gives a large region the
        context the model was trained with (a tumour filled from 3 mm of context is filled with guesses)."""
        need = (np.asarray(extent_mm[:2]) + 2 * (reach_mm + CONTEXT_MM)) / np.asarray(self.spacing)
        size = tuple(int(max(s, -(-n // CROP_MULTIPLE) * CROP_MULTIPLE)) for s, n in zip(self.size, need))
        return dataclasses.replace(self, size=size)


@dataclasses.dataclass
class FillResult:
    volume: Volume
    slices: int                     # slices generated
    evaluations: int                # network evaluations in all (per guidance branch)
    seconds: float
    warnings: list[str]
    direction: str                  # the order used ("up" or "down"; "auto" resolved)
    region: Region = dataclasses.field(repr=False)
    generated: np.ndarray = dataclasses.field(repr=False)   # model-grid result, (k, j, i) in [-1, 1]


def _check(ct: Volume, mask: Volume, spec: SliceModelSpec, reach_mm: float) -> np.ndarray:
    check_ct(ct)
    if axial_axis(ct) != 0:
        raise InvalidImageError("Slice-wise filling works on axial slices, but this volume's slices are not axial. "
                                "Reformat (resample) it to axial slices first.")
    on_grid = mask_on_grid(mask, ct).array > 0
    idx = np.argwhere(on_grid)
    lo, hi = idx.min(0), idx.max(0)
    if lo[0] == 0 or hi[0] == ct.shape[0] - 1:
        raise InvalidMaskError("The region reaches the first or last slice of the image. Each slice is filled "
                               "from the one next to it: leave at least one slice above and below the region.")
    if (lo[1:] == 0).any() or (hi[1:] == np.asarray(ct.shape[1:]) - 1).any():
        raise InvalidMaskError("The region touches the edge of the image. The model needs surrounding tissue: "
                               "draw the region away from the image border.")
    for k in np.unique(idx[:, 0]):
        if on_grid[k].mean() > 0.5:
            raise InvalidMaskError(f"The region covers most of slice {k}: there is too little tissue around it to "
                                   "fill it from. Draw a smaller region.")
    _, extent = mask_center_and_extent(ct, on_grid)
    room = MAX_CROP_FACTOR * np.asarray(spec.size) * np.asarray(spec.spacing) - 2 * (reach_mm + CONTEXT_MM)
    if (extent[:2] > room).any():
        raise InvalidMaskError(
            f"The region is too large for this model: {extent[:2].round(0).tolist()} mm in-plane; the model handles "
            f"up to {room.round(0).tolist()} mm (with {reach_mm:g} mm for margin and blending and {CONTEXT_MM:g} mm "
            "of tissue around it).")
    return on_grid


def _box(ct: Volume, on_grid: np.ndarray, spec: SliceModelSpec) -> tuple[np.ndarray, RegionSpec]:
    """The box's centre (LPS) and grid: the region's slices plus one real slice on each side, at the CT's own slice
    positions (centred on the mask's bounding box, n + 2 slices land exactly on the CT's slices)."""
    ks = np.unique(np.argwhere(on_grid)[:, 0])
    center, _ = mask_center_and_extent(ct, on_grid)
    return center, spec.box(int(ks[-1] - ks[0] + 3), float(ct.spacing[2]))


def _touched(ct: Volume, on_grid: np.ndarray, region: Region) -> np.ndarray:
    """Model pixels that hold at least one mask voxel: ``extract``'s half-coverage rule drops the thin end slices
    of a round region (a few native voxels, less than half of any coarser model pixel), which would then be pasted
    back unfilled."""
    grid = region.grid
    d = np.asarray(grid.GetDirection()).reshape(3, 3)
    pts = ct.index_to_physical(np.argwhere(on_grid))
    ijk = ((pts - np.asarray(grid.GetOrigin())) @ d) / np.asarray(grid.GetSpacing())
    kji = np.rint(ijk[:, ::-1]).astype(int)
    inside = np.all((kji >= 0) & (kji < np.asarray(region.mask.shape)), axis=1)
    out = region.mask > 0
    out[tuple(kji[inside].T)] = True
    return out


def _grow_in_plane(mask: np.ndarray, spacing_ij: tuple[float, float], reach_mm: float) -> np.ndarray:
    """``mask`` (k, j, i) grown by ``reach_mm`` within each slice only (slices are 5 mm apart on the sample CTs,
    farther than any margin: growing in 3D would regenerate whole neighbouring slices)."""
    out = np.zeros_like(mask, dtype=bool)
    for k in np.flatnonzero(mask.any(axis=(1, 2))):
        out[k] = blend_weight(mask[k], np.asarray(spacing_ij)[::-1], reach_mm, 0.0) > 0
    return out


def fill_region(ct: Volume, mask: Volume, filler: SliceFiller, spec: SliceModelSpec, *,
                margin_mm: float = MARGIN_MM, feather_mm: float = FEATHER_MM, direction: str = "auto",
                seed: int = 0, device: torch.device | str = "cpu", progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None) -> FillResult:
    """Fill the voxels of ``mask`` (any label volume; every non-zero voxel) slice by slice; see the module doc."""
    if direction not in DIRECTIONS:
        raise RadSynthError(f"Unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}.")
    t0 = time.perf_counter()
    device = torch.device(device)
    reach = margin_mm + feather_mm
    on_grid = _check(ct, mask, spec, reach)
    warnings = []
    native = tuple(float(s) for s in ct.spacing[:2])
    if not np.allclose(native, spec.spacing, rtol=0.05):
        warnings.append(f"The model works at {spec.spacing[0]:g} x {spec.spacing[1]:g} mm in-plane; this CT has "
                        f"{native[0]:.3g} x {native[1]:.3g} mm, so the region was resampled to the model's spacing "
                        "and back.")
    trained = spec
    spec = spec.fitted(mask_center_and_extent(ct, on_grid)[1], reach)
    if spec.size != trained.size:
        warnings.append(f"The region is larger than the model's {trained.size[0]} x {trained.size[1]} training crop; "
                        f"it was filled on a {spec.size[0]} x {spec.size[1]} crop so that {CONTEXT_MM:g} mm of "
                        "tissue surrounds it (the model never saw a hole this large in training).")
    center, box = _box(ct, on_grid, spec)
    region = extract(ct, on_grid, box, center_lps=center)
    grow = _grow_in_plane(_touched(ct, on_grid, region), box.spacing[:2], reach)
    grow[0] = grow[-1] = False                   # the bounding slices stay real: they are the first neighbours
    todo = [k for k in range(1, box.size[2] - 1) if grow[k].any()]
    if direction == "auto":
        direction = start_end(region.image, grow, box.spacing[:2])
    if direction == "down":
        todo = todo[::-1]
    state = torch.from_numpy(region.image.copy())[:, None]   # (k, 1, H, W)
    gen_mask = torch.from_numpy(grow.astype(np.float32))[:, None]
    generator = torch.Generator().manual_seed(int(seed))
    step = 1 if direction == "up" else -1
    for n_done, k in enumerate(todo):
        if cancel is not None:
            cancel.check()
        known = state[k:k + 1].to(device)
        neighbour = state[k - step:k - step + 1].to(device)
        sub = span(progress, n_done / len(todo), (n_done + 1) / len(todo), f"slice {n_done + 1}/{len(todo)}")
        out = filler(k, known, gen_mask[k:k + 1].to(device), neighbour, generator, sub, cancel)
        # the filler's known pixels are the input's; kept exactly here too, whatever the filler returned
        state[k] = torch.where(gen_mask[k] > 0.5, out[0].float().cpu(), state[k])
    generated = state[:, 0].numpy()
    out_volume = paste(ct, region, generated, on_grid, margin_mm=margin_mm, feather_mm=feather_mm)
    return FillResult(out_volume, len(todo), len(todo) * int(filler.evaluations), time.perf_counter() - t0,
                      warnings, direction, region, generated)


#: the in-plane ring around the region that says what tissue surrounds it
RING_MM = 6.0


def start_end(image: np.ndarray, grow: np.ndarray, spacing_ij) -> str:
    """"up" or "down": start from the bounding slice whose footprint of the region is closest in mean value to the
    ring of tissue around the region in the slices it fills.

    The first slice is conditioned on that real slice, and the fill carries what it shows through the region: lung2's
    tumour sits on the diaphragm, its slice below shows soft tissue where the tumour was (+3 HU) and the slice above
    lung (−669 HU); filled upwards from below, a slice model trained 9 400 steps put the soft tissue back (−408 HU
    inside), filled downwards −652 HU (the ring around it: −390 HU)."""
    footprint = grow.any(axis=0)
    filled = np.flatnonzero(grow.any(axis=(1, 2)))
    spacing = np.asarray(spacing_ij, dtype=np.float64)[::-1]
    ring = np.zeros_like(grow)
    for k in filled:
        dist = ndimage.distance_transform_edt(~grow[k], sampling=spacing)
        ring[k] = (dist > 0) & (dist <= RING_MM)
    if not ring.any():
        return "up"
    around = float(image[ring].mean())
    below, above = (abs(float(image[k][footprint].mean()) - around) for k in (0, image.shape[0] - 1))
    return "up" if below <= above else "down"


# -------------------------------------------------------------------------------------------------------- fillers

@dataclasses.dataclass
class _Filler:
    fn: Callable[..., torch.Tensor]
    evaluations: int

    def __call__(self, k, known, mask, neighbour, generator, progress, cancel):
        return self.fn(k, known, mask, neighbour, generator, progress, cancel)


def _neighbour_for(net: Any, neighbour: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return neighbour if getattr(net, "neighbour", False) else None


def palette_filler(net: Any, steps: int, eta: float = 0.0, strength: float = 1.0) -> SliceFiller:
    """Mask-conditioned network (``radsynth.nets.inpaint_unet`` with mask input), DDIM over ``steps``.
    ``strength`` < 1 regenerates (new texture, same anatomy): the chain starts from the noised original."""
    from ...nets.inpaint_unet import denoiser

    def fill(k, known, mask, neighbour, generator, progress, cancel):
        denoise = denoiser(net, known, mask, _neighbour_for(net, neighbour))
        noise = ddim.randn(known.shape, generator, known)
        out = ddim.sample_ddim(denoise, noise, net.scheduler, steps, eta=eta, generator=generator,
                               progress=progress, cancel=cancel, init=known if strength < 1 else None,
                               strength=strength)
        return torch.where(mask > 0.5, out, known)

    return _Filler(fill, ddim.evaluations(steps, strength))


def repaint_filler(net: Any, steps: int = repaint.DEFAULT_STEPS, jump_length: int = repaint.DEFAULT_JUMP,
                   resample: int = repaint.DEFAULT_RESAMPLE, eta: float = 1.0) -> SliceFiller:
    """RePaint over an unconditional slice model (``inpaint_unet`` without mask input; a neighbour channel, if the
    model has one, still conditions each slice on the one before)."""
    from ...nets.inpaint_unet import unconditional_denoiser

    def fill(k, known, mask, neighbour, generator, progress, cancel):
        denoise = unconditional_denoiser(net, _neighbour_for(net, neighbour))
        return repaint.sample_repaint(denoise, known, mask, net.scheduler, steps, jump_length, resample, eta=eta,
                                      generator=generator, progress=progress, cancel=cancel)

    return _Filler(fill, repaint.evaluations(steps, jump_length, resample))


def sdm_filler(net: Any, maps: np.ndarray, guidance: float = 1.5, steps: int = repaint.DEFAULT_STEPS,
               jump_length: int = repaint.DEFAULT_JUMP, resample: int = repaint.DEFAULT_RESAMPLE,
               eta: float = 1.0) -> SliceFiller:
    """SDM rendering ``maps`` ((k, j, i) label values on the box's grid, see :func:`labels_on_box`) inside the
    region, RePaint keeping the CT around it; classifier-free guidance ``guidance`` (1 = conditional only)."""
    from ...nets.sdm import nullable

    onehot = net.one_hot(maps)          # validates the labels against the model's classes, naming unknown ones

    def fill(k, known, mask, neighbour, generator, progress, cancel):
        seg = onehot[k:k + 1].to(known.device)
        denoise = classifier_free(nullable(net, seg, _neighbour_for(net, neighbour)), guidance)
        return repaint.sample_repaint(denoise, known, mask, net.scheduler, steps, jump_length, resample, eta=eta,
                                      generator=generator, progress=progress, cancel=cancel)

    evals = repaint.evaluations(steps, jump_length, resample) * (1 if guidance == 1.0 else 2)
    return _Filler(fill, evals)


def labels_on_box(label_map: Volume, ct: Volume, mask: Volume, spec: SliceModelSpec) -> np.ndarray:
    """A label map (on any grid) resampled, nearest neighbour, onto the box :func:`fill_region` will use for
    ``mask`` on ``ct``."""
    center, box = _box(ct, mask_on_grid(mask, ct).array > 0, spec)
    grid = crop_grid(ct, center, box)
    out = sitk.Resample(label_map.to_sitk(), grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                        sitk.sitkUInt8)
    return sitk.GetArrayFromImage(out)


# ------------------------------------------------------------------------------------------- registry run functions

def _device(net: Any) -> torch.device:
    return next(net.parameters()).device


def _sampling(net: Any, o: dict, eta_default: float) -> dict[str, Any]:
    """Sampler settings: the option when given, else the model card's ``sampling``, else the engine default."""
    card = dict(getattr(net, "card", {}).get("sampling", {}))
    total = int(net.scheduler.num_train_timesteps)
    steps = int(o.get("steps") or card.get("steps", repaint.DEFAULT_STEPS))
    if steps > total:
        raise RadSynthError(f"This model was trained with {total} timesteps; choose at most {total} steps "
                            f"(got {steps}).")
    eta = o.get("eta")
    return {"steps": steps, "eta": float(card.get("eta", eta_default) if eta is None else eta),
            "jump_length": int(o.get("jump_length") if o.get("jump_length") is not None
                               else card.get("jump_length", repaint.DEFAULT_JUMP)),
            "resample": int(o.get("resample") or card.get("resample", repaint.DEFAULT_RESAMPLE))}


def _result(operation: str, image: Volume, region_mask: Volume, res: FillResult, net: Any,
            settings: dict[str, Any]) -> Any:
    from ...result import Result

    card = getattr(net, "card", {})
    name, version = str(card.get("name", "model")), str(card.get("version", "?"))
    out = res.volume.mark_synthetic(f"radsynth inpaint {operation} ({name} {version})")
    settings = {**settings, "slices": res.slices, "network_evaluations": res.evaluations,
                "demo_models": bool(card.get("demo")), "device": str(_device(net))}
    return Result(operation, out, region_mask, {}, {"fill": round(res.seconds, 3)}, {name: version}, settings,
                  list(res.warnings))


def run_fill(ctx: Any, image: Volume, mask: Volume, **o: Any) -> Any:
    """Registry run function of ``fill``."""
    from . import FILL_MODEL

    net = ctx.model(FILL_MODEL)
    mode = o.get("mode", "healthy")
    if net.mask_input:
        s = _sampling(net, o, eta_default=0.0)
        strength = 1.0 if mode == "healthy" else float(o.get("strength", 0.5))
        filler = palette_filler(net, s["steps"], s["eta"], strength)
        method = "mask-conditioned DDIM"
    else:
        if mode == "regenerate":
            raise RadSynthError("Regenerate (new texture, same anatomy) needs a mask-conditioned model; this model "
                                "is unconditional (RePaint). Choose Healthy tissue or another model.")
        s = _sampling(net, o, eta_default=1.0)
        filler = repaint_filler(net, s["steps"], s["jump_length"], s["resample"], s["eta"])
        strength, method = 1.0, "RePaint"
    res = fill_region(image, mask, filler, SliceModelSpec.from_card(net.card),
                      margin_mm=float(o.get("margin_mm", MARGIN_MM)), feather_mm=float(o.get("feather_mm", FEATHER_MM)),
                      direction=o.get("direction", DIRECTION.default), seed=int(o.get("seed", 0)), device=_device(net),
                      progress=ctx.progress, cancel=ctx.cancel)
    settings = {**s, "mode": mode, "strength": strength, "method": method, "seed": int(o.get("seed", 0)),
                "margin_mm": o.get("margin_mm", MARGIN_MM), "feather_mm": o.get("feather_mm", FEATHER_MM),
                "direction": res.direction}
    return _result("fill", image, image.label_like(mask_on_grid(mask, image).array > 0), res, net, settings)


def run_render_map(ctx: Any, image: Volume, mask: Optional[Volume], **o: Any) -> Any:
    """Registry run function of ``render-map``: SDM inside the region (default: the map's nodules)."""
    from ...nets import sdm
    from . import SDM_MODEL, labels

    label_map = o.get("label_map")
    if label_map is None:
        raise RadSynthError("Rendering needs a label map (background, body, lungs, trachea, nodules): build one "
                            "with the automatic map and edit it.")
    on_ct = sitk.GetArrayFromImage(sitk.Resample(label_map.to_sitk(), image.to_sitk(), sitk.Transform(),
                                                 sitk.sitkNearestNeighbor, 0)) if not label_map.same_grid(image) \
        else np.asarray(label_map.array)
    labels.validate(on_ct, what="The label map")
    net = ctx.model(SDM_MODEL)
    folded, note = labels.fold_malignancy(on_ct, net.classes)
    labels.validate(folded, net.classes, what="The label map")
    map_volume = image.label_like(folded.astype(np.uint8))
    if mask is None:
        nodules = np.isin(folded, labels.NODULES)
        if not nodules.any():
            raise InvalidMaskError("The map has no nodule and no region was given: paint a nodule, or give the "
                                   "region to render (e.g. where a nodule was erased).")
        mask = image.label_like(nodules)
    spec = SliceModelSpec.from_card(net.card)
    s = _sampling(net, o, eta_default=1.0)
    guidance = float(o.get("guidance", 1.5))
    filler = sdm_filler(net, labels_on_box(map_volume, image, mask, spec), guidance, s["steps"], s["jump_length"],
                        s["resample"], s["eta"])
    res = fill_region(image, mask, filler, spec, margin_mm=float(o.get("margin_mm", MARGIN_MM)),
                      feather_mm=float(o.get("feather_mm", FEATHER_MM)), direction=o.get("direction", DIRECTION.default),
                      seed=int(o.get("seed", 0)), device=_device(net), progress=ctx.progress, cancel=ctx.cancel)
    if note:
        res.warnings.append(note)
    settings = {**s, "guidance": guidance, "method": "SDM + RePaint", "seed": int(o.get("seed", 0))}
    return _result("render-map", image, image.label_like(mask_on_grid(mask, image).array > 0), res, net, settings)
