"""``generate volume``: the run function and the Python API around :func:`latent.generate_volume`.

* **Model**: the bundled demo (``demo-volume-ldm``, the catalogue's default of kind ``volume-ldm``), the folder
  the host chose (``--models``), or any installed volume-ldm / MAISI-family model named by ``model`` (name or
  folder).
* **Organ segmentation** (optional): an integer label volume on any grid plus the names of its labels. Names are
  mapped onto what the model takes:
  - a model with its own mask channels (the demo: ``body``, ``lung``): lung segments (TotalSegmentator's five lobes,
    ``lung_left``/``lung_right``, the auto map's left/right lung) make the lung channel; the body channel is the
    body segment plus every other segment (organs lie inside the body, as in the training maps);
  - a MAISI model with a ControlNet: the card's ``label_dict`` (name -> MAISI label value, from the published
    label_dict.json); TotalSegmentator's ``kidney_left`` style is read as MAISI's ``left kidney``.
  Segments the model has no label for are listed; a label the model requires (``required`` in the card, e.g.
  body) that no segment provides is refused before any work. The output grid is centred on the segmentation's
  anatomy, so the generated volume lies over the segmentation in Slicer.
* Everything else (sizes, spacing, body region, sampler, steps, memory before any work, progress, cancel, HU,
  the synthetic mark) is :func:`latent.generate_volume`'s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ...errors import InvalidMaskError, InvalidOptionError, ModelError
from ...result import Result
from ...volume import Volume
from .volume_ops import MODEL_KIND, MODEL_KINDS

#: the auto map's / DiffusionInpaint's label scheme: the names a label volume without names is read with
DEFAULT_NAMES = {1: "body", 2: "left lung", 3: "right lung", 4: "trachea", 5: "nodule"}
BODY_NAMES = {"body", "body trunc", "body extremities", "patient", "skin", "soft tissue"}
_SIDES = ("left", "right")


def normalise(name: str) -> str:
    """``lung_upper_lobe_left`` -> ``left lung upper lobe``; ``Kidney-Right`` -> ``right kidney``."""
    words = [w for w in re.split(r"[\s_\-]+", str(name).strip().lower()) if w]
    if len(words) > 1 and words[-1] in _SIDES:
        words = [words[-1], *words[:-1]]
    return " ".join(words)


def parse_triple(value: Any, what: str, kind: type) -> Optional[tuple]:
    """"64,64,48" / "64x64x48" / a sequence -> a triple of ``kind``; None stays None."""
    if value is None:
        return None
    items = re.split(r"[,x×\s]+", value.strip()) if isinstance(value, str) else list(value)
    try:
        numbers = [kind(float(v)) if kind is int else float(v) for v in items if v != ""]
    except (TypeError, ValueError):
        raise InvalidOptionError(f"The {what} must be three numbers X,Y,Z (got {value!r}).") from None
    if len(numbers) != 3:
        raise InvalidOptionError(f"The {what} must be three numbers X,Y,Z (got {value!r}).")
    return tuple(numbers)


# ------------------------------------------------------------------------------------------ segment mapping

class SegmentMapping:
    """Which segmentation labels become which model label; ``unmapped`` and ``notes`` say what was not used."""

    def __init__(self) -> None:
        self.targets: dict[str, list[int]] = {}       # model label name -> segmentation values
        self.unmapped: list[str] = []
        self.direct: set[str] = set()                  # model labels some segment is named for
        self.notes: list[str] = []

    def add(self, target: str, value: int) -> None:
        self.targets.setdefault(target, []).append(int(value))


def _names(values: Sequence[int], names: Optional[Mapping[Any, str]]) -> dict[int, str]:
    given = {int(k): str(v) for k, v in (names or DEFAULT_NAMES).items()}
    missing = [v for v in values if v not in given]
    if missing:
        raise InvalidMaskError(f"The segmentation holds label value(s) {', '.join(map(str, missing))} that have no "
                               "name; give the names of its labels (segment names: {\"value\": \"name\"}).")
    return {v: given[v] for v in values}


def map_segments(values: Sequence[int], names: Optional[Mapping[Any, str]], card: dict) -> SegmentMapping:
    """Map the segmentation's labels onto the model's label set (see the module docstring)."""
    from .latent import mask_channel_labels

    named = _names(values, names)
    out = SegmentMapping()
    cond = card.get("conditioning", {})
    channels = mask_channel_labels(card)
    if channels:
        required = list((cond.get("mask_channels") or {}).get("required") or [])
        others = []
        for value, name in named.items():
            n = normalise(name)
            if n in BODY_NAMES and "body" in channels:
                out.add("body", value)
                out.direct.add("body")
            elif "lung" in n.split() and "lung" in channels:
                out.add("lung", value)
                out.add("body", value)
                out.direct.add("lung")
            elif "body" in channels:
                out.add("body", value)
                others.append(name)
        if others:
            out.notes.append(f"The model knows {', '.join(channels)} only; {', '.join(others)} count as body.")
    elif cond.get("mask"):
        table = {normalise(k): int(v) for k, v in (card.get("label_dict") or {}).items()}
        if not table:
            raise ModelError(f"The model {card.get('name')} has a ControlNet but its card has no label_dict (organ "
                             "name -> label value), so a segmentation cannot be mapped onto its labels. Convert it "
                             "again with the label_dict.json published with the weights.")
        required = list(cond.get("required_labels") or [])
        for value, name in named.items():
            n = normalise(name)
            if n in BODY_NAMES and "body" in table:
                n = "body"
            if n in table:
                out.add(n, value)
                out.direct.add(n)
            else:
                out.unmapped.append(name)
    else:
        raise InvalidOptionError(f"The model {card.get('name')} cannot follow an organ mask (it has neither a "
                                 "ControlNet nor mask channels); generate without a segmentation.")
    if not out.targets:
        raise InvalidMaskError("None of the segmentation's segments (" + ", ".join(named.values()) + ") maps onto "
                               f"the labels of {card.get('name')}.")
    missing = [r for r in required if r not in out.direct]
    if missing:
        raise InvalidMaskError(f"The model {card.get('name')} needs a {' and a '.join(missing)} segment to follow a "
                               f"segmentation, which has only: {', '.join(named.values())}. Add one "
                               "(TotalSegmentator's 'body' task, or the automatic map) and try again.")
    if out.unmapped:
        out.notes.append(f"No label of {card.get('name')} for: {', '.join(out.unmapped)}; ignored.")
    return out


def output_grid(size: Sequence[int], spacing: Sequence[float], center_lps: Sequence[float], orientation: str):
    """The output grid as a SimpleITK reference image (what the segmentation is resampled onto)."""
    from .latent import to_volume
    return to_volume(np.zeros(tuple(size), np.int16), spacing, orientation, center_lps).to_sitk()


def segmentation_on_grid(segmentation: Volume, size: Sequence[int], spacing: Sequence[float], orientation: str
                         ) -> tuple[np.ndarray, tuple[float, float, float]]:
    """((x, y, z) labels on the output grid, centre in LPS): the grid is centred on the labelled voxels' box."""
    import SimpleITK as sitk

    if segmentation.array.ndim != 3:
        raise InvalidMaskError("The segmentation must be a 3D label volume.")
    if segmentation.array.dtype.kind not in "iub":
        if not np.all(np.equal(np.mod(segmentation.array, 1), 0)):
            raise InvalidMaskError("The segmentation must hold integer labels.")
    kji = np.argwhere(segmentation.array != 0)
    if not len(kji):
        raise InvalidMaskError("The segmentation is empty: it has no labelled voxel.")
    center = tuple(float(v) for v in segmentation.index_to_physical(((kji.min(0) + kji.max(0)) / 2.0)[None])[0])
    ref = output_grid(size, spacing, center, orientation)
    src = sitk.Cast(segmentation.to_sitk(), sitk.sitkInt32)
    res = sitk.Resample(src, ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
    labels = np.transpose(sitk.GetArrayFromImage(res), (2, 1, 0))
    if not labels.any():
        raise InvalidMaskError("No labelled voxel of the segmentation falls inside the output volume.")
    return labels, center


def conditioning(card: dict, labels_xyz: np.ndarray, mapping: SegmentMapping) -> dict[str, np.ndarray]:
    """``{"maps": (C, x, y, z)}`` for a mask-channel model, ``{"labels": (x, y, z)}`` for a ControlNet model."""
    from .latent import mask_channel_labels

    channels = mask_channel_labels(card)
    if channels:
        maps = np.stack([np.isin(labels_xyz, mapping.targets.get(c, [])) for c in channels]).astype(np.float32)
        return {"maps": maps}
    table = {normalise(k): int(v) for k, v in card["label_dict"].items()}
    out = np.zeros(labels_xyz.shape, np.int32)
    for target, values in mapping.targets.items():
        out[np.isin(labels_xyz, values)] = table[target]
    return {"labels": out}


# --------------------------------------------------------------------------------------------------- the API

def load(model: Optional[str] = None, device: str = "auto") -> Any:
    """A loaded whole-volume model: None the bundled demo, else an installed model's name or a model folder."""
    from ... import models

    if model is None:
        return models.load(MODEL_KIND, None, device)
    folder = Path(model)
    if not folder.is_dir():
        folder = models.find(str(model)).folder
    card = models.read_card(folder)
    if card["kind"] not in MODEL_KINDS:
        raise ModelError(f"{model} is a {card['kind']!r} model; generate volume runs {', '.join(MODEL_KINDS)} "
                         "models.")
    return models.load(card["kind"], folder, device)


def generate(model: Any, *, size=None, spacing=None, body_region: Optional[str | Sequence[str]] = None,
             steps: Optional[int] = None, sampler: Optional[str] = None, seed: int = 0,
             segmentation: Optional[Volume] = None, segment_names: Optional[Mapping[Any, str]] = None,
             available: Optional[float] = None, progress=None, cancel=None) -> Result:
    """One synthetic CT (Result, volume in HU, marked synthetic) from a loaded model (:func:`load`).

    ``size`` / ``spacing``: (x, y, z) or "X,Y,Z" (default: the model card's). ``segmentation`` (integer labels, any
    grid) with ``segment_names`` ({value: name}; default the auto map's labels) makes the volume follow it."""
    from .latent import generate_volume

    card = model.card
    grid = card.get("grid", {})
    size = parse_triple(size, "output size", int) or grid.get("default_size")
    spacing = parse_triple(spacing, "spacing", float) or grid.get("default_spacing_mm")
    regions = [r.strip() for r in body_region.split(",")] if isinstance(body_region, str) else body_region
    extra: dict[str, Any] = {}
    notes: list[str] = []
    mapping = None
    if segmentation is not None:
        from ...nets import maisi_config as mc
        size, spacing, _ = mc.check_request(card, size, spacing, regions)   # the grid is refused before resampling
        values = [int(v) for v in np.unique(segmentation.array) if v != 0]
        if not values:
            raise InvalidMaskError("The segmentation is empty: it has no labelled voxel.")
        mapping = map_segments(values, segment_names, card)
        labels_xyz, center = segmentation_on_grid(segmentation, size, spacing, grid.get("orientation", "RAS"))
        extra = {**conditioning(card, labels_xyz, mapping), "center_lps": center}
        notes = mapping.notes
    result = generate_volume(model, size, spacing, steps=steps, sampler=sampler, seed=seed, body_region=regions,
                             available=available, progress=progress, cancel=cancel, **extra)
    result.warnings.extend(notes)
    if mapping is not None:
        result.settings["segments_mapped"] = {k: v for k, v in mapping.targets.items()}
        result.settings["segments_unmapped"] = list(mapping.unmapped)
    return result


def generate_volumes(model: Any = None, count: int = 1, seed: int = 0, device: str = "auto",
                     **options: Any) -> list[Volume]:
    """``count`` synthetic CT volumes (seeds ``seed`` .. ``seed + count - 1``): the call ``radsynth evaluate
    generate-volume`` makes. ``model``: a loaded model, None (the demo), a name or a folder."""
    if model is None or isinstance(model, (str, Path)):
        model = load(None if model is None else str(model), device)
    return [generate(model, seed=seed + i, **options).volume for i in range(int(count))]


def run(ctx: Any, image: Optional[Volume], mask: Optional[Volume], **options: Any) -> Result:
    """The registered run function of ``generate volume`` (declared in ``volume_ops``)."""
    name = options.pop("model", None)
    model = ctx.model(MODEL_KIND) if name is None else load(name, getattr(ctx, "device", None) or "auto")
    return generate(model, progress=ctx.progress, cancel=ctx.cancel, **options)
