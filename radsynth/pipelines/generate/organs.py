"""Generate a CT that follows an organ map, slice by slice (ASCII with each slice's map as a condition).

The organ-score model (``radsynth.train.organs``) is the ASCII score model with the one-hot maps of its K stacked
slices as extra input channels. The volume grows up from an air slice (map: background) like an unconditional
``generate slices`` run, and every stack is sampled with its own slices' maps (``ascii.grow``'s ``before_stack``),
so each new slice follows its map and continues its neighbour.

* **Map → model grid:** the map's slices are resampled in-plane onto the model grid (the card's ``grid``, centred
  like the CT slices of ``generate slices``) by nearest neighbour, and the generated slices come back onto the
  map's in-plane grid: the result lies on the map's grid (its spacing, direction and in-plane extent; the slices
  ``start`` … ``start + slices − 1``). A warning says that the map was resampled and to what.
* **Organs not kept** are relabelled, before conditioning, to the nearest kept organ (a Euclidean distance
  transform in mm on the model grid; background only when no organ is kept): a nodule inside a lung becomes
  lung, a lung becomes the body around it, never air. The
  model then draws what surrounds the organ there, instead of being told "no organ" (all-zero channels), which
  means "no map at all" to a model trained with map dropout. Background is not an organ and is always kept.
* **Guidance:** s = s_u + w (s_c − s_u) with s_u the score with the map dropped (zeros). w = 1 is the conditional
  model (one evaluation), w = 0 unguided (one evaluation), other w classifier-free guidance (two).
* Names are checked against the label scheme (``radsynth.pipelines.inpaint.labels``): an unknown organ name or a
  map value the model was not trained on is refused by name, before anything runs.
* Cancel keeps the finished slices (the lowest ones), labelled partial, as ``generate slices`` does.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Optional

import numpy as np

from ...errors import CancelledError, InvalidOptionError, ModelError
from ...volume import Volume
from ..inpaint import labels
from .slices import (RESAMPLE_CHUNK, LivePreview, _k_points_down, bounded_score, chain, check_memory, check_volume,
                     eta_progress, finish, foot_to_head, from_model_plane, icnet_calibrator, labels_to_model_plane,
                     make_sampler, memory_needed, model_grid, model_window, spacing_warning, to_model_plane)


FIRST_NEIGHBOURS = ("image", "air")


def _image_seed(image: Optional[Volume], organ_map: Volume, lo_fh: int, window, size: int, spacing_mm: float):
    """The image's slice below the start on the model grid (model units, (1, size, size)), or None and why not."""
    import torch

    from ...nets.icnet import Window
    if image is None:
        return None, "No image was given: the first slice was generated from an air slice."
    if not image.same_grid(organ_map):
        return None, ("The organ map is not on the image's grid, so the image's slices cannot condition it: the "
                      "first slice was generated from an air slice.")
    if lo_fh == 0:
        return None, "The start is the map's first slice: the first slice was generated from an air slice."
    below = np.asarray(foot_to_head(image, image.array)[lo_fh - 1:lo_fh], dtype=np.float32)
    outside = float(np.mean((below < window[0] - 1) | (below > window[1] + 1)))
    if outside > 0.2:
        return None, (f"The image's slice below the start lies {100 * outside:.0f} % outside the model's HU range "
                      "(not this model's CT?): the first slice was generated from an air slice.")
    return Window(*window).to_unit(torch.from_numpy(to_model_plane(below, image.spacing, size, spacing_mm))), None


def organ_values(keep: Optional[Iterable[str] | str]) -> Optional[list[int]]:
    """Label values of the organs named in ``keep`` (comma-separated or a list); an unknown name is refused."""
    if keep is None:
        return None
    names = [n.strip() for n in (keep.split(",") if isinstance(keep, str) else keep) if n and n.strip()]
    values = []
    for name in names:
        value = labels.value_of(name)       # UnknownLabelError names the organ and the known ones
        if value == labels.BACKGROUND:
            continue                        # background is not an organ: always kept
        values.append(value)
    return sorted(set(values))


def model_classes(card: dict) -> list[int]:
    classes = card.get("classes")
    if not classes:
        raise ModelError(f"The model card of {card.get('name', 'the organ model')} does not list its organ classes "
                         "(classes: label values).")
    return [int(c) for c in classes]


def check_map(label_map: Volume, classes: list[int]) -> tuple[np.ndarray, list[str]]:
    """The map's values checked against the model's classes (malignancy folded into nodule when it was not
    trained with it); an UnknownLabelError names every value it does not know."""
    check_volume(label_map)
    array, note = labels.fold_malignancy(np.asarray(label_map.array), classes)
    labels.validate(array, classes, "The organ map")
    if not np.any(array != labels.BACKGROUND):
        raise InvalidOptionError("The organ map is empty: it holds background only. Draw or load the organs first.")
    return array.astype(np.uint8), [note] if note else []


def keep_organs(model_map: np.ndarray, keep: Optional[list[int]], spacing_zyx: tuple[float, float, float]
                ) -> tuple[np.ndarray, dict[str, int]]:
    """``model_map`` with every organ not in ``keep`` relabelled to the nearest kept label (background counts as
    kept); returns the map and the voxels relabelled per organ name."""
    from scipy import ndimage

    if keep is None:
        return model_map, {}
    drop = ~np.isin(model_map, [labels.BACKGROUND, *keep])
    if not drop.any():
        return model_map, {}
    replaced = {labels.BY_VALUE[int(v)].name: int(c) for v, c in zip(*np.unique(model_map[drop], return_counts=True))}
    # nearest kept organ; background only when no organ is kept (an organ sits inside the body, not in the air)
    source = np.isin(model_map, keep) if np.isin(model_map, keep).any() else ~drop
    _, nearest = ndimage.distance_transform_edt(~source, sampling=spacing_zyx, return_indices=True)
    out = model_map.copy()
    out[drop] = model_map[tuple(nearest)][drop]
    return out.astype(np.uint8), replaced


class GuidedScore:
    """score(x, σ) of the organ model for the stack whose slice positions :meth:`at` set last."""

    def __init__(self, net: Any, hot: "Any", background: "Any", guidance: float) -> None:
        self.net, self.hot, self.background, self.guidance = net, hot, background, float(guidance)
        self.card = getattr(net, "card", None)
        self.condition = None

    @property
    def evaluations(self) -> int:
        return 1 if self.guidance in (0.0, 1.0) else 2

    def at(self, positions: list[int]) -> None:
        """Condition on the maps of these slab positions (outside the slab: the air slice's background map)."""
        import torch
        parts = [self.hot[p] if 0 <= p < self.hot.shape[0] else self.background for p in positions]
        self.condition = torch.cat(parts, 0)[None]

    def __call__(self, x, sigma):
        cond = self.condition.to(x.device)
        if self.guidance == 1.0:
            return self.net(x, sigma, cond)
        unguided = self.net(x, sigma, cond * 0)
        if self.guidance == 0.0:
            return unguided
        return unguided + self.guidance * (self.net(x, sigma, cond) - unguided)


def generate_organs(organ_map: Volume, score_net: Any, icnet_net: Any = None, *, keep=None,
                    start: Optional[int] = None, slices: int = 8, guidance: float = 1.0, sampler: str = "fast",
                    steps: Optional[int] = None, snr: float = 0.16, seed: int = 0, progress=None, cancel=None,
                    available_bytes: Optional[float] = None, on_slice=None, preview: Optional[str] = None,
                    image: Optional[Volume] = None, first_neighbour: str = "image", map_source: str = "given"):
    """Generate ``slices`` axial slices of CT that follow ``organ_map`` (label scheme values) from its slice
    ``start`` upwards. Returns a radsynth Result whose volume lies on the map's grid (those slices), marked
    synthetic; ``keep``: organ names to keep (None: all), the others replaced by what surrounds them.

    ``on_slice(position, slice)``: each finished slice in model units, position 0 = the start slice; ``preview``:
    a folder where the volume generated so far is written after every slice (``slices.LivePreview``).
    ``image`` (the map's CT) and ``first_neighbour`` "image": the first slice is conditioned on the image's real
    slice below the start, when the image lies on the map's grid and that slice is inside it; otherwise (or "air")
    the volume grows from an air slice.
    """
    import torch

    from ...nets.icnet import Window
    from ...nets.score_unet import class_lut, organ_condition
    from .ascii import grow

    t_start = time.perf_counter()
    torch.set_flush_denormal(True)
    card = dict(getattr(score_net, "card", {}) or {})
    name = f"{card.get('name', 'organ model')} {card.get('version', '')}".strip()
    classes = model_classes(card)
    keep_values = organ_values(keep)            # unknown names refused before anything else
    window = model_window(card)
    model_k = int(card.get("architecture", {}).get("slices", 2))
    size, spacing_mm = model_grid(card, name)
    if getattr(score_net, "condition_channels", model_k * len(classes)) != model_k * len(classes):
        raise ModelError(f"The model {name} is not an organ model for {len(classes)} classes (its network takes "
                         f"{getattr(score_net, 'condition_channels', 0)} map channels).")
    if slices < 1:
        raise InvalidOptionError("Ask for at least one slice.")
    array, warnings = check_map(organ_map, classes)
    count, rows, columns = organ_map.shape
    flipped = _k_points_down(organ_map)
    map_fh = foot_to_head(organ_map, array)
    if start is None:
        lo_fh = int(np.nonzero((map_fh != labels.BACKGROUND).any(axis=(1, 2)))[0][0])
    else:
        if not 0 <= int(start) < count:
            raise InvalidOptionError(f"The start slice {start} is outside the organ map, which has slices "
                                     f"0..{count - 1}.")
        lo_fh = count - 1 - int(start) if flipped else int(start)
    if lo_fh + slices > count:
        raise InvalidOptionError(f"{slices} slices upwards from slice {count - 1 - lo_fh if flipped else lo_fh} go "
                                 f"beyond the organ map ({count} slices): ask for at most {count - lo_fh}.")
    check_memory(memory_needed(rows, columns, slices, size), slices, available_bytes)
    if keep_values is not None:
        missing = [labels.BY_VALUE[v].name for v in keep_values if not np.any(map_fh == v)]
        if missing:
            warnings.append(f"Not in the organ map, so nothing to keep: {', '.join(missing)}.")
        unknown_to_model = [labels.BY_VALUE[v].name for v in keep_values if v not in classes]
        if unknown_to_model:
            raise InvalidOptionError(f"The model {name} does not know {', '.join(unknown_to_model)}; it knows "
                                     f"{labels.describe(classes)}.")
    warnings += spacing_warning(card, name, float(organ_map.spacing[2]))
    warnings.append(f"The organ map ({organ_map.spacing[0]:.2f} x {organ_map.spacing[1]:.2f} mm pixels) was "
                    f"resampled by nearest neighbour onto the model's {size}x{size} grid of {spacing_mm:g} mm "
                    "pixels; the CT comes back on the map's grid.")

    win = Window(*window)
    seed_units = None
    if first_neighbour not in FIRST_NEIGHBOURS:
        raise InvalidOptionError(f"Unknown first neighbour {first_neighbour!r}; choose image or air.")
    if first_neighbour == "image":
        seed_units, note = _image_seed(image, organ_map, lo_fh, window, size, spacing_mm)
        if note:
            warnings.append(note)
    planes = labels_to_model_plane(map_fh, organ_map.spacing, size, spacing_mm)
    planes, replaced = keep_organs(planes, keep_values, (float(organ_map.spacing[2]), spacing_mm, spacing_mm))
    lut = class_lut(classes)
    # grow's positions: 0 = the real slice below the start when seeded (its map conditions it), else the start
    first = lo_fh - 1 if seed_units is not None else lo_fh
    slab = torch.from_numpy(planes[first:lo_fh + slices].astype(np.int64))
    hot = organ_condition(slab[None], lut, len(classes))[0].view(slab.shape[0], len(classes), size, size)
    background = organ_condition(torch.zeros(1, 1, size, size, dtype=torch.long), lut, len(classes))[0]
    guided = GuidedScore(score_net, hot, background, guidance)

    calibrate = icnet_calibrator(icnet_net, window)
    device = next(score_net.parameters()).device
    generator = torch.Generator(device=device).manual_seed(int(seed))
    stack_sampler = make_sampler(card, bounded_score(guided), sampler, steps, snr, generator, device)
    t_grow = time.perf_counter()
    live = (LivePreview(preview, organ_map, first, win.to_hu, spacing_mm,
                        label=f"radsynth generate organs ({name}, growing)") if preview else None)
    user_slice = None
    if on_slice is not None:      # positions from the start slice, seeded or not
        user_slice = (lambda p, new: on_slice(p - (lo_fh - first), new))
    with torch.no_grad():
        grown = grow(stack_sampler, seed_units, model_k, above=slices, calibrate=calibrate, shape=(1, size, size),
                     progress=eta_progress(progress, t_grow), cancel=cancel, on_slice=chain(user_slice, live),
                     before_stack=guided.at)
    t_sampled = time.perf_counter()
    made = grown.above
    if made == 0:
        raise CancelledError("Cancelled by the user before the first slice was finished; nothing was changed.")
    new_hu = win.to_hu(grown.slices[0, grown.seed_count:].clamp(-1, 1)).cpu().numpy()
    out_fh = np.empty((made, rows, columns), dtype=np.float32)
    for chunk in range(0, made, RESAMPLE_CHUNK):
        out_fh[chunk:chunk + RESAMPLE_CHUNK] = from_model_plane(new_hu[chunk:chunk + RESAMPLE_CHUNK], spacing_mm,
                                                                organ_map.spacing, (rows, columns))
    k0 = count - 1 - (lo_fh + made - 1) if flipped else lo_fh
    origin = tuple(float(v) for v in organ_map.index_to_physical(np.array([[k0, 0, 0]], dtype=float))[0])
    out = np.clip(np.rint(out_fh[::-1] if flipped else out_fh), -32768, 32767).astype(np.int16)
    volume = Volume(np.ascontiguousarray(out), origin, tuple(organ_map.spacing), tuple(organ_map.direction))
    partial = grown.partial
    evaluations = stack_sampler.evaluations * guided.evaluations
    kept = ([labels.BY_VALUE[v].name for v in keep_values] if keep_values is not None else
            [labels.BY_VALUE[int(v)].name for v in np.unique(map_fh) if v != labels.BACKGROUND])
    settings = {"organ_map": map_source, "keep": kept, "replaced_voxels_model_grid": replaced,
                "start": count - 1 - lo_fh if flipped else lo_fh, "slices": slices, "slices_generated": made,
                "output_first_slice_in_map": k0, "k": model_k, "guidance": float(guidance),
                "first_neighbour": "image slice below the start" if seed_units is not None else "air",
                "icnet": icnet_net is not None, "sampler": stack_sampler.name, "snr": snr if sampler == "pc" else None,
                "evaluations_per_slice": evaluations, "seed": int(seed), "partial": partial}
    label = (f"radsynth generate organs ({name}; map {map_source}, keep {', '.join(kept)}, guidance {guidance:g}, "
             f"IC-Net {'on' if icnet_net is not None else 'off'}, {stack_sampler.name}, seed {seed})")
    return finish("organs", volume, label, settings, warnings, card, icnet_net, made, slices,
                  (t_start, t_grow, t_sampled), progress)


def generate(organ_map: Volume, *, model_dir: Optional[str] = None, icnet: bool = True, device: str = "cpu",
             **options: Any):
    """Python API: :func:`generate_organs` with the organ model of ``model_dir`` (default: the bundled demo
    model) and the bundled IC-Net (``icnet=False``: none); ``options`` as :func:`generate_organs` takes them."""
    from ...models import load
    from .slices_ops import ICNET_MODEL, ORGAN_MODEL

    net = load(ORGAN_MODEL, model_dir, device=device)
    calibrator_net = load(ICNET_MODEL, None, device=device) if icnet else None
    return generate_organs(organ_map, net, calibrator_net, **options)


def run(ctx: Any, image: Volume, mask: Optional[Volume], **options: Any):
    """The registered run function of ``generate organs`` (declared in ``slices_ops``): the given organ map, or
    the image's automatic map when none is given."""
    from .slices_ops import ICNET_MODEL, ORGAN_MODEL

    organ_map = options.pop("organ_map", None)
    source = "given"
    organ_values(options.get("keep"))            # an unknown organ name is refused before the slow parts
    if organ_map is not None:
        labels.validate(np.asarray(organ_map.array), labels.ALL, "The organ map")
    if organ_map is None:
        from ..inpaint.auto_map import auto_map
        if ctx.progress is not None:
            ctx.progress(0.0, "automatic organ map")
        organ_map, source = auto_map(image).map, "automatic (body, lungs, trachea)"
    score_net = ctx.model(ORGAN_MODEL)
    use = options.pop("icnet", "on")
    icnet = ctx.model(ICNET_MODEL, primary=False) if use in ("on", True) else None
    return generate_organs(organ_map, score_net, icnet, progress=ctx.progress, cancel=ctx.cancel,
                           map_source=source, image=image, **options)
