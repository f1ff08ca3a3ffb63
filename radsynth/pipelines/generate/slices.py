"""Grow a CT volume slice by slice from seed slices (ASCII + IC-Net) — the pipeline around ``ascii.grow``.

* Geometry: the volume must be axial (``geometry.axial_axis`` = k) and 3D. Slices go foot → head to the model
  (the order it was trained in) whatever the sign of the k axis; "up" means towards the head. Each seed slice is
  resampled in-plane onto the model grid (the card's ``grid``: size² pixels of spacing_mm, centred on the slice's
  in-plane centre, anti-aliased), the generated slices are resampled back onto the seed's in-plane grid, and the new
  slices extend the volume along k at the seed's slice spacing: the output has the input's spacing and direction,
  its origin moves down by one slice per slice generated below. Seed slices are copied unchanged (real data).
* Units: HU ↔ model units by the card's ``window`` (HU range mapped onto [−1, 1]); a seed whose voxels mostly lie
  outside that range (a windowed model on a full-range CT, or a CT not in HU) is refused.
* K = 3 seeds with the picked slice and its real neighbour on the side away from the growth (both, for "both"),
  so the first step is conditioned on real data; at the volume's edge it falls back to ASCII's joint first step.
* Unconditional (no seed slice): the image gives only the grid; the volume grows up from an air slice and starts
  at the image's origin.
* Cancel keeps the finished slices; the result then says partial (settings, warning and provenance).
"""

from __future__ import annotations

import time
from typing import Any, Optional

import numpy as np

from ...errors import CancelledError, InvalidImageError, InvalidOptionError, ModelError, RadSynthError
from ...geometry import axial_axis
from ...volume import Volume, check_ct

AIR_HU = -1024.0
#: a seed whose voxels fall outside the model's HU range more than this is refused (clipping would erase them)
OUTSIDE_LIMIT = 0.2


class MemoryLimitError(RadSynthError):
    """More slices than this machine's memory holds."""


def foot_to_head(volume: Volume, array: np.ndarray) -> np.ndarray:
    """``array`` on ``volume``'s grid with its k axis reordered foot → head (a view; the same call undoes it)."""
    return array[::-1] if _k_points_down(volume) else array


def _k_points_down(volume: Volume) -> bool:
    return float(np.asarray(volume.direction, dtype=float).reshape(3, 3)[2, 2]) < 0


def _sample(planes: np.ndarray, src_spacing: tuple[float, float], src_shape: tuple[int, int],
            dst_spacing: tuple[float, float], dst_shape: tuple[int, int], mode: str = "bilinear",
            fill: float = AIR_HU) -> np.ndarray:
    """Resampling of (N, H, W) planes between two in-plane grids sharing their centre (bilinear, or nearest for
    label maps); ``fill`` (air) outside."""
    import torch
    import torch.nn.functional as F

    n = planes.shape[0]
    (sh, sw), (dh, dw) = src_shape, dst_shape
    # destination pixel centres in source continuous index, normalised for align_corners=True
    ys = ((np.arange(dh) - (dh - 1) / 2) * dst_spacing[1] / src_spacing[1] + (sh - 1) / 2) * 2 / max(sh - 1, 1) - 1
    xs = ((np.arange(dw) - (dw - 1) / 2) * dst_spacing[0] / src_spacing[0] + (sw - 1) / 2) * 2 / max(sw - 1, 1) - 1
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    grid = torch.from_numpy(np.stack([gx, gy], -1)).float()[None].expand(n, dh, dw, 2)
    src = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[:, None] - fill
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return (out[:, 0] + fill).numpy()


def to_model_plane(array: np.ndarray, spacing: tuple[float, ...], size: int, spacing_mm: float) -> np.ndarray:
    """(N, H, W) HU slices with in-plane ``spacing`` (x, y) → (N, size, size) on the model grid, anti-aliased."""
    from scipy import ndimage

    sx, sy = float(spacing[0]), float(spacing[1])
    # Gaussian of ~0.4 output pixels before decimating, so a 512² slice does not alias into the 64² grid
    sigma = (0.0, max(0.4 * spacing_mm / sy - 0.4, 0.0), max(0.4 * spacing_mm / sx - 0.4, 0.0))
    smooth = ndimage.gaussian_filter(array.astype(np.float32), sigma, mode="nearest") if max(sigma) else array
    return _sample(smooth, (sx, sy), array.shape[1:], (spacing_mm, spacing_mm), (size, size))


def labels_to_model_plane(label_map: np.ndarray, spacing: tuple[float, ...], size: int,
                          spacing_mm: float) -> np.ndarray:
    """(N, H, W) label slices → (N, size, size) uint8 on the model grid, nearest neighbour (background outside)."""
    out = _sample(label_map.astype(np.float32), (float(spacing[0]), float(spacing[1])), label_map.shape[1:],
                  (spacing_mm, spacing_mm), (size, size), mode="nearest", fill=0.0)
    return np.rint(out).astype(np.uint8)


def from_model_plane(planes: np.ndarray, spacing_mm: float, spacing: tuple[float, ...],
                     shape: tuple[int, int]) -> np.ndarray:
    """(N, size, size) model-grid HU slices → (N, H, W) on the seed's in-plane grid (air outside the model's FOV)."""
    return _sample(planes, (spacing_mm, spacing_mm), planes.shape[1:], (float(spacing[0]), float(spacing[1])),
                   shape)


# ------------------------------------------------------------------------------------------------- checks

def check_volume(volume: Volume) -> None:
    """A 3D axial volume (refused otherwise, with what to do)."""
    if volume.array.ndim != 3 or min(volume.shape) < 2:
        raise InvalidImageError(f"A 3D volume is needed; this one has shape {volume.shape} (a 2D image or a single "
                                "slice). Load the whole CT series.")
    axis = axial_axis(volume)
    if axis != 0:
        runs = {1: "front-back (coronal slices)", 2: "left-right (sagittal slices)"}[axis]
        raise InvalidImageError(f"The volume is not axial: its slice axis runs {runs}. Slices are grown along the "
                                "head-foot axis; resample the CT to axial slices first (Slicer: Resample Scalar "
                                "Volume, or Crop Volume with an axial ROI).")


def model_window(card: dict) -> tuple[float, float]:
    """The HU range a score model maps onto [−1, 1] (card ``window``)."""
    try:
        lo, hi = (float(v) for v in card["window"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"The model card of {card.get('name', 'the slice model')} does not say which HU range it "
                         "was trained on (window: [low, high]).") from None
    if not hi > lo:
        raise ModelError(f"The model card of {card.get('name')} gives an empty HU window {lo}..{hi}.")
    return lo, hi


def model_grid(card: dict, name: str) -> tuple[int, float]:
    """The model plane a card gives: (size, spacing_mm)."""
    grid = card.get("grid") or {}
    try:
        return int(grid["size"]), float(grid["spacing_mm"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"The model card of {name} does not give its slice grid (grid: size, spacing_mm).") from None


def spacing_warning(card: dict, name: str, slice_mm: float) -> list[str]:
    """A note when the CT's slices are spaced unlike the model's training slices."""
    trained_mm = (card.get("grid") or {}).get("slice_spacing_mm")
    if trained_mm and abs(float(slice_mm) - float(trained_mm)) > 0.2 * float(trained_mm):
        return [f"The model {name} was trained on slices {trained_mm} mm apart; this volume's are {slice_mm:.2f} mm "
                f"apart, so the new slices are spaced like the volume but look like {trained_mm} mm steps."]
    return []


def check_hu_range(seed_hu: np.ndarray, window: tuple[float, float], name: str) -> None:
    """Refuse a model trained for another HU range: clipping would erase what the seed holds outside it."""
    lo, hi = window
    outside = float(np.mean((seed_hu < lo - 1) | (seed_hu > hi + 1)))
    if outside > OUTSIDE_LIMIT:
        raise ModelError(f"The model {name} was trained for {lo:.0f}..{hi:.0f} HU, but {100 * outside:.0f} % of the "
                         "seed slice lies outside that range: it would be clipped away. Use a model trained for "
                         "this CT's HU range (the full-range demo model covers -1024..3071 HU).")


def memory_needed(rows: int, columns: int, total_slices: int, size: int, batch: int = 1) -> int:
    """Bytes this run holds at its peak: the result in float32 and its integer copy on the seed's grid, the
    model-grid stack, and one resampling chunk (grid + source + output)."""
    result = total_slices * rows * columns * (4 + 2)
    model = total_slices * size * size * 4 * 3 * batch
    chunk = RESAMPLE_CHUNK * rows * columns * (8 + 4 + 4)
    return int(result + model + chunk + 64 * 2 ** 20)    # + network activations at 64²-256² (measured < 64 MB)


RESAMPLE_CHUNK = 8


def check_memory(need: int, slices: int, available: Optional[float] = None) -> None:
    if available is None:
        import torch

        from .latent import available_memory
        available = available_memory(torch.device("cpu"))
    usable = 0.8 * float(available)
    if need > usable:
        raise MemoryLimitError(f"{slices} slices need about {need / 1e9:.2f} GB of memory; {usable / 1e9:.2f} GB can "
                               "be used on this computer (80 % of what is free). Ask for fewer slices, or crop the "
                               "seed volume in-plane.")


def _seed_indices(index: int, count: int, direction: str, k: int) -> list[int]:
    """Seed slice indices (foot → head order): the picked slice plus, for K = 3, its real neighbour(s) on the side
    away from the growth, so the first step is conditioned on real slices; none at the volume's edge."""
    lo = hi = index
    if k == 3:
        if direction in ("up", "both") and index - 1 >= 0:
            lo = index - 1
        if direction in ("down", "both") and index + 1 < count:
            hi = index + 1
    return list(range(lo, hi + 1))


# ------------------------------------------------------------------------------------------------- samplers

def neighbour_start_sampler(score: Any, sde: Any, steps: int, start_sigma: float, generator=None, device="cpu"):
    """The fast sampler started at ``start_sigma`` from the nearest known slice plus noise, instead of from pure
    noise at σ_max (SDEdit's truncated start, Meng et al. 2022, with the neighbour as the guess).

    Adjacent slices 5 mm apart differ by far less than σ_max, so x_σ = neighbour + σz is a much better start for the
    unknown slice's marginal than N(0, σ_max²); the ODE from there spends all its levels where the new slice's
    anatomy is decided. It runs as an exact change of variable: y = x − m with m the neighbour on the generated
    channels (0 on the known ones), s_y(y, σ) = s(y + m, σ), so known channels, levels and the solver are the fast
    sampler's unchanged. A start from air (the unconditional first slice) has nothing to copy and uses the full
    schedule from σ_max.
    """
    import torch

    from ...samplers.score import Inpaint, karras_sigmas, sample_dpmpp_2m
    from .ascii import StackSampler

    def run(shape, inpaint, progress, cancel):
        mask = inpaint.mask.view(-1) > 0.5
        known = [c for c in range(shape[1]) if mask[c]]
        values = inpaint.known.to(device).expand(shape)
        m = torch.zeros(shape, device=device)
        for c in range(shape[1]):
            if not mask[c]:
                m[:, c] = values[:, min(known, key=lambda j: abs(j - c))]
        flat = all(bool((values[:, j] == values[:, j].flatten()[0]).all()) for j in known)
        top = sde.sigma_max if flat else min(float(start_sigma), sde.sigma_max)
        if flat:
            m.zero_()
        shifted = Inpaint(values - m, inpaint.mask, known_sigma=inpaint.known_sigma)
        y = sample_dpmpp_2m(lambda y, s: score(y + m, s), shape, karras_sigmas(sde.sigma_min, top, steps),
                            inpaint=shifted, generator=generator, device=device, progress=progress, cancel=cancel)
        return y + m

    return StackSampler(f"fast-{steps}-from-neighbour@{start_sigma:g}", steps, sde.sigma_min, run)


# ------------------------------------------------------------------------------------------------- pipeline

def bounded_score(net: Any) -> Any:
    """The network's score with its implied denoised estimate D = x + σ² s clipped to the model range [−1, 1].

    The training slices were clipped to the card's HU window, so the exact posterior mean E[x₀ | x_σ] lies in
    [−1, 1] at every σ: the projection never moves the exact denoiser, it only removes what a small network gets
    wrong at high noise, where an error ε in its noise prediction is an error σε in D (ε ≈ 0.1 at σ = 68 for the
    demo model: D off by ±6 where the data span 2). Without it the ODE carries those errors down to σ_min and the
    slice ends far outside the HU range (static thresholding, Saharia et al. 2022). Clean known channels hold
    seed values inside [−1, 1], so clipping leaves them as they are.
    """
    import torch

    def score(x, sigma):
        with torch.no_grad():
            s = net(x, sigma)
            sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
            per = sigma.reshape(-1, 1).expand(x.shape[0], x.shape[1]) if sigma.dim() <= 1 else sigma
            var = per.reshape(*per.shape, *([1] * (x.dim() - 2))) ** 2
            denoised = (x + var * s).clamp(-1.0, 1.0)
            return (denoised - x) / var

    score.card = getattr(net, "card", None)
    return score


def icnet_calibrator(icnet_net: Any, window: tuple[float, float]):
    """ASCII's calibrator in the score model's units (None without IC-Net); refuses an IC-Net for another range."""
    if icnet_net is None:
        return None
    from ...nets.icnet import Window, calibrator, window_from_card

    ic_card = getattr(icnet_net, "card", {}) or {}
    ic_window = window_from_card(ic_card)
    if ic_window.lo < window[0] or ic_window.hi > window[1]:
        raise ModelError(f"The IC-Net {ic_card.get('name', '')} calibrates {ic_window.lo:.0f}..{ic_window.hi:.0f}"
                         f" HU, outside the slice model's {window[0]:.0f}..{window[1]:.0f} HU: they were trained "
                         "for different HU ranges.")
    return calibrator(icnet_net, Window(*window), ic_window)


def make_sampler(card: dict, score: Any, sampler: str, steps: Optional[int], snr: float, generator, device):
    """The stack sampler a run asks for: fast (from the neighbour at the card's ``sampling.fast_start_sigma``
    when it gives one) or pc."""
    from ...processes.ve_sde import VESDE
    from .ascii import fast_sampler, pc_sampler
    from .slices_ops import FAST_STEPS, PC_STEPS

    sde = VESDE.from_card(card)
    start = (card.get("sampling") or {}).get("fast_start_sigma")
    if sampler == "fast" and start:
        return neighbour_start_sampler(score, sde, steps or FAST_STEPS, float(start), generator=generator,
                                       device=device)
    if sampler == "fast":
        return fast_sampler(score, sde, steps or FAST_STEPS, generator=generator, device=device)
    if sampler == "pc":
        return pc_sampler(score, sde, steps or PC_STEPS, snr=snr, generator=generator, device=device)
    raise InvalidOptionError(f"Unknown sampler {sampler!r}; choose fast or pc.")


def eta_progress(progress, t_start: float):
    """Sampling progress mapped onto 2 … 95 % of the run, with the time left extrapolated."""
    def report(fraction: float, stage: str) -> None:
        if progress is None:
            return
        elapsed = time.perf_counter() - t_start
        eta = f", about {elapsed * (1 - fraction) / fraction:.0f} s left" if fraction > 0.02 else ""
        progress(0.02 + 0.93 * fraction, f"{stage}{eta}")
    return report


PREVIEW_FILE = "growing.nrrd"


class LivePreview:
    """``on_slice`` for a live view: after every finished slice the volume grown so far (the slices of a
    cancelled run's result, on the output grid, marked synthetic and "growing") is written to
    ``folder/growing.nrrd``, atomically, so another thread or process (the Slicer panel, the worker's host) can
    show it while the run goes on. Positions are ``grow``'s (0 = the first seed slice); ``fh_of_zero`` is that
    position's foot → head index on ``grid``; ``known`` holds the seed slices (HU, on the grid) by position."""

    def __init__(self, folder: str, grid: Volume, fh_of_zero: int, to_hu, spacing_mm: float,
                 known: Optional[dict[int, np.ndarray]] = None, label: str = "radsynth generate (growing)") -> None:
        from pathlib import Path

        self.path = Path(folder) / PREVIEW_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.grid, self.fh0, self.to_hu, self.spacing_mm, self.label = grid, fh_of_zero, to_hu, spacing_mm, label
        self.planes: dict[int, np.ndarray] = dict(known or {})
        self.writes = 0

    def __call__(self, position: int, new) -> None:
        import os

        import SimpleITK as sitk

        hu = self.to_hu(new[:1].clamp(-1, 1)).cpu().numpy()
        rows, columns = self.grid.shape[1:]
        self.planes[position] = from_model_plane(hu, self.spacing_mm, self.grid.spacing, (rows, columns))[0]
        lo, hi = min(self.planes), max(self.planes)
        stack = np.stack([self.planes.get(p, np.full((rows, columns), AIR_HU, np.float32)) for p in range(lo, hi + 1)])
        first_fh, n = self.fh0 + lo, hi - lo + 1
        flipped = _k_points_down(self.grid)
        k0 = self.grid.shape[0] - 1 - (first_fh + n - 1) if flipped else first_fh
        origin = tuple(float(v) for v in self.grid.index_to_physical(np.array([[k0, 0, 0]], dtype=float))[0])
        out = np.clip(np.rint(stack[::-1] if flipped else stack), -32768, 32767).astype(np.int16)
        volume = Volume(np.ascontiguousarray(out), origin, tuple(self.grid.spacing), tuple(self.grid.direction))
        volume.mark_synthetic(f"{self.label}, {len(self.planes)} slices so far")
        # uncompressed: rewritten after every slice (16 slices of 512^2: 0.06 s here, 1.3 s compressed)
        tmp = self.path.with_name("growing.partial.nrrd")
        sitk.WriteImage(volume.to_sitk(), str(tmp), False)
        os.replace(tmp, self.path)      # atomic: a reader sees the previous volume or this one
        self.writes += 1


def read_preview(folder: str) -> Optional[Volume]:
    """The volume a :class:`LivePreview` last wrote to ``folder`` (None before the first slice; the first preview
    of a run holds one slice)."""
    from pathlib import Path

    from ...volume import read_volume

    path = Path(folder) / PREVIEW_FILE
    return read_volume(path, single_slice=True) if path.is_file() else None


def chain(*fns):
    """One ``on_slice`` calling each given one (None skipped)."""
    fns = [f for f in fns if f is not None]
    if not fns:
        return None
    return lambda position, new: [f(position, new) for f in fns] and None


def finish(operation: str, volume: Volume, label: str, settings: dict, warnings: list[str], card: dict,
           icnet_net: Any, made: int, requested: int, times: tuple[float, float, float], progress=None):
    """The Result of a slice-wise generation: marked synthetic (and partial after a cancel), demo warning,
    timings per slice, model versions."""
    from ...result import Result

    t_start, t_grow, t_sampled = times
    partial = bool(settings.get("partial"))
    if partial:
        label += f", PARTIAL: cancelled after {made} of {requested} slices"
        warnings.append(f"Cancelled: {made} of {requested} slices were generated; the result is partial.")
    volume.mark_synthetic(label)
    if partial:
        volume.metadata["RadSynth.Partial"] = f"{made}/{requested}"
    name = f"{card.get('name', operation)} {card.get('version', '')}".strip()
    if card.get("demo"):
        warnings.append(card.get("warning") or f"{name} is a demo model.")
    timings = {"sampling": t_sampled - t_grow, "total": time.perf_counter() - t_start,
               "per_slice": (t_sampled - t_grow) / max(made, 1)}
    if progress is not None:
        progress(1.0, "done" if not partial else "cancelled: partial result")
    models = {card.get("name", operation): str(card.get("version", ""))}
    if icnet_net is not None:
        ic = getattr(icnet_net, "card", {}) or {}
        models[ic.get("name", "icnet")] = str(ic.get("version", ""))
    return Result(operation, volume, None, {}, timings, models, settings, warnings)


def generate_slices(image: Volume, score_net: Any, icnet_net: Any = None, *, seed_slice: Optional[int] = None,
                    direction: str = "up", slices: int = 8, k: Optional[int] = None, sampler: str = "fast",
                    steps: Optional[int] = None, snr: float = 0.16, seed: int = 0, progress=None, cancel=None,
                    available_bytes: Optional[float] = None, on_slice=None, preview: Optional[str] = None):
    """Grow ``slices`` new axial slices from ``image``'s slice ``seed_slice`` (None: unconditional, the image gives
    the grid). Returns a radsynth Result whose volume is the seed slices plus the new ones, marked synthetic.
    ``preview``: a folder where the volume grown so far is written after every slice (:class:`LivePreview`)."""
    import torch

    from ...nets.icnet import Window
    from ...result import Result
    from .ascii import grow

    t_start = time.perf_counter()
    torch.set_flush_denormal(True)
    card = dict(getattr(score_net, "card", {}) or {})
    name = f"{card.get('name', 'slice model')} {card.get('version', '')}".strip()
    check_volume(image)
    if seed_slice is not None:
        check_ct(image)
    window = model_window(card)
    model_k = int(card.get("architecture", {}).get("slices", getattr(score_net, "slices", 2)))
    if k is not None and int(k) != model_k:
        raise InvalidOptionError(f"The model {name} stacks K={model_k} adjacent slices; K={k} needs a model "
                                 f"trained for it.")
    size, spacing_mm = model_grid(card, name)
    if direction not in ("up", "down", "both"):
        raise InvalidOptionError(f"Unknown direction {direction!r}; choose up, down or both.")
    if slices < 1:
        raise InvalidOptionError("Ask for at least one new slice.")
    count, rows, columns = image.shape
    conditional = seed_slice is not None
    flipped = _k_points_down(image)
    if conditional:
        if not 0 <= int(seed_slice) < count:
            raise InvalidOptionError(f"The seed slice {seed_slice} is outside the volume, which has slices "
                                     f"0..{count - 1}.")
        index_fh = count - 1 - int(seed_slice) if flipped else int(seed_slice)
        seed_idx = _seed_indices(index_fh, count, direction, model_k)
    elif direction != "up":
        raise InvalidOptionError("An unconditional volume grows up from an air slice; choose direction up, or give "
                                 "a seed slice.")
    above = slices - slices // 2 if direction == "both" else (slices if direction == "up" else 0)
    below = slices - above
    total = slices + (len(seed_idx) if conditional else 0)
    check_memory(memory_needed(rows, columns, total, size), total, available_bytes)

    array_fh = foot_to_head(image, image.array)
    warnings: list[str] = spacing_warning(card, name, float(image.spacing[2]))
    win = Window(*window)
    if conditional:
        seed_hu = np.asarray(array_fh[seed_idx], dtype=np.float32)
        check_hu_range(seed_hu, window, name)
        seed_units = win.to_unit(torch.from_numpy(to_model_plane(seed_hu, image.spacing, size, spacing_mm)))
    calibrate = icnet_calibrator(icnet_net, window)
    device = next(score_net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    stack_sampler = make_sampler(card, bounded_score(score_net), sampler, steps, snr, generator, device)
    t_grow = time.perf_counter()
    report = eta_progress(progress, t_grow)

    with torch.no_grad():
        live = None
        if preview:
            known = ({i: array_fh[j].astype(np.float32) for i, j in enumerate(seed_idx)} if conditional else {})
            live = LivePreview(preview, image, seed_idx[0] if conditional else 0, win.to_hu, spacing_mm, known,
                               f"radsynth generate slices ({name}, growing)")
        grown = grow(stack_sampler, seed_units if conditional else None, model_k, above=above, below=below,
                     calibrate=calibrate, shape=(1, size, size), progress=report, cancel=cancel,
                     on_slice=chain(on_slice, live))
    t_sampled = time.perf_counter()
    generated = grown.generated
    new_hu = win.to_hu(grown.slices[0].clamp(-1, 1)).cpu().numpy()
    if grown.slices.shape[1] - (len(seed_idx) if conditional else 0) == 0:
        raise CancelledError("Cancelled by the user before the first slice was finished; nothing was changed.")
    out_fh = np.empty((grown.slices.shape[1], rows, columns), dtype=np.float32)
    gen_positions = np.nonzero(generated.numpy())[0]
    for start in range(0, len(gen_positions), RESAMPLE_CHUNK):
        chunk = gen_positions[start:start + RESAMPLE_CHUNK]
        out_fh[chunk] = from_model_plane(new_hu[chunk], spacing_mm, image.spacing, (rows, columns))
    if conditional:
        out_fh[grown.seed_start:grown.seed_start + grown.seed_count] = array_fh[seed_idx]
        first_fh = seed_idx[0] - grown.below            # foot-to-head index of the output's lowest slice
    else:
        first_fh = 0
    n_out = out_fh.shape[0]
    # slice 0 of the output in the input's k order: the lowest slice, or the highest when k points to the feet
    k0 = (count - 1 - (first_fh + n_out - 1)) if flipped else first_fh
    origin = tuple(float(v) for v in image.index_to_physical(np.array([[k0, 0, 0]], dtype=float))[0])
    out = foot_to_head(image, out_fh)
    dtype = image.array.dtype if np.issubdtype(image.array.dtype, np.integer) else np.float32
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    volume = Volume(np.ascontiguousarray(out.astype(dtype)), origin, tuple(image.spacing), tuple(image.direction))
    made = int(generated.sum())
    requested = above + below
    settings = {"seed_slice": seed_slice, "seed_slices_used": [count - 1 - i if flipped else i for i in seed_idx]
                if conditional else [], "direction": direction, "slices": requested, "slices_generated": made,
                "slices_below": grown.below, "slices_above": grown.above, "k": model_k,
                "icnet": icnet_net is not None, "sampler": stack_sampler.name, "snr": snr if sampler == "pc" else None,
                "evaluations_per_slice": stack_sampler.evaluations, "seed": int(seed), "partial": grown.partial,
                "output_first_slice_in_input": k0}
    label = (f"radsynth generate slices ({name}; seed slice {seed_slice if conditional else 'none'}, {direction}, "
             f"K={model_k}, IC-Net {'on' if icnet_net is not None else 'off'}, {stack_sampler.name}, seed {seed})")
    return finish("slices", volume, label, settings, warnings, card, icnet_net, made, requested,
                  (t_start, t_grow, t_sampled), progress)


def run(ctx: Any, image: Volume, mask: Optional[Volume], **options: Any):
    """The registered run function of ``generate slices`` (declared in ``slices_ops``)."""
    from .slices_ops import ICNET_MODEL, SCORE_MODEL

    score_net = ctx.model(SCORE_MODEL)
    use = options.pop("icnet", "on")
    icnet = ctx.model(ICNET_MODEL, primary=False) if use in ("on", True) else None
    return generate_slices(image, score_net, icnet, progress=ctx.progress, cancel=ctx.cancel, **options)
