"""The label scheme of semantic maps (SDM): which value means which structure, and checking a map against it.

Seed 001's six classes keep their values (0 background, 1 body, 2 left lung, 3 right lung, 4 trachea, 5 nodule), so
maps prepared for it read the same. Malignancy, when known, gets its own values (6 benign, 7 malignant) instead of
the seed's re-use of 5 for "benign" in its malignancy variant: one value never means two things, and a map without
malignancy stays valid for a model trained with it. Where labels overlap, the higher priority wins (nodule over
trachea over lungs over body), as in the seed's composition.

Torch-free: hosts (Slicer, the CLI) validate maps without loading a network.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from ...errors import UnknownLabelError  # noqa: F401 - part of this module's API (defined with the other errors)


@dataclasses.dataclass(frozen=True)
class Label:
    value: int
    name: str
    aliases: tuple[str, ...] = ()
    priority: int = 0


BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, NODULE, BENIGN, MALIGNANT = range(8)

LABELS: tuple[Label, ...] = (
    Label(BACKGROUND, "background", ("outside", "air")),
    Label(BODY, "body", ("patient", "soft tissue")),
    Label(LEFT_LUNG, "left lung", ("lung left", "lung_left", "left_lung", "l lung"), 2),
    Label(RIGHT_LUNG, "right lung", ("lung right", "lung_right", "right_lung", "r lung"), 2),
    Label(TRACHEA, "trachea", ("airway",), 3),
    Label(NODULE, "nodule", ("tumor", "tumour", "lesion", "mass"), 4),
    Label(BENIGN, "benign nodule", ("benign", "benign tumor", "benign tumour"), 4),
    Label(MALIGNANT, "malignant nodule", ("malignant", "malignant tumor", "malignant tumour", "cancer"), 4),
)
BY_VALUE: dict[int, Label] = {lab.value: lab for lab in LABELS}
NODULES = (NODULE, BENIGN, MALIGNANT)
#: the seed's six classes: a model trained without malignancy knows these
BASIC = (BACKGROUND, BODY, LEFT_LUNG, RIGHT_LUNG, TRACHEA, NODULE)
ALL = tuple(BY_VALUE)


def describe(values: Iterable[int] = ALL) -> str:
    return ", ".join(f"{v} {BY_VALUE[v].name}" for v in values)


def _norm(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").replace("-", " ").split())


_BY_NAME = {_norm(n): lab.value for lab in LABELS for n in (lab.name, *lab.aliases)}


def value_of(name: str) -> int:
    """The value of a structure named like a Slicer segment ("Left lung", "lung_left", "Tumor" …)."""
    key = _norm(name)
    if key not in _BY_NAME:
        raise UnknownLabelError(f"The segment {name!r} is not part of the label scheme; name segments one of: "
                                f"{', '.join(lab.name for lab in LABELS)}.")
    return _BY_NAME[key]


def values_of(names: Iterable[str], what: str = "The segmentation") -> dict[str, int]:
    """{name: value} for structures named like Slicer segments; one UnknownLabelError naming every name the scheme
    does not know."""
    names = list(names)
    unknown = [n for n in names if _norm(n) not in _BY_NAME]
    if unknown:
        quoted = ", ".join(repr(n) for n in unknown)
        raise UnknownLabelError(f"{what} has segment{'s' if len(unknown) > 1 else ''} {quoted} that the label scheme "
                                f"does not know; name segments one of: {', '.join(lab.name for lab in LABELS)}.")
    return {n: _BY_NAME[_norm(n)] for n in names}


def validate(label_map: np.ndarray, known: Sequence[int] = ALL, what: str = "The label map") -> list[int]:
    """The values present in ``label_map``, after checking each is one of ``known``; an UnknownLabelError names
    every value that is not (and what the scheme calls the known ones)."""
    a = np.asarray(label_map)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise UnknownLabelError(f"{what} holds fractional values: it is not a label map. Save the segmentation "
                                    "as labels (0, 1, 2, …).")
    elif a.dtype.kind not in "iub":
        raise UnknownLabelError(f"{what} has values of type {a.dtype}; a label map holds whole numbers.")
    present = [int(v) for v in np.unique(a)]
    unknown = [v for v in present if v not in known]
    if unknown:
        names = [f"{v} ({BY_VALUE[v].name}, not known to this model)" if v in BY_VALUE else str(v) for v in unknown]
        raise UnknownLabelError(
            f"{what} holds label{'s' if len(unknown) > 1 else ''} {', '.join(names)} that the label scheme does not "
            f"know. Known labels: {describe(known)}.")
    return present


def fold_malignancy(label_map: np.ndarray, model_classes: Sequence[int]) -> tuple[np.ndarray, Optional[str]]:
    """A map for a model trained without malignancy: benign and malignant become "nodule" (and a note says so).
    A model trained with malignancy gets the map unchanged."""
    if BENIGN in model_classes and MALIGNANT in model_classes:
        return label_map, None
    has = np.isin(label_map, (BENIGN, MALIGNANT))
    if not has.any():
        return label_map, None
    out = np.where(has, NODULE, label_map).astype(label_map.dtype)
    return out, "This model was trained without malignancy: benign and malignant nodules are rendered as nodules."


def compose(masks: Mapping[int, np.ndarray], shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """A uint8 map from boolean masks by value; where masks overlap the higher priority wins (then the higher value)."""
    if not masks and shape is None:
        raise ValueError("compose needs masks or a shape")
    shape = shape or next(iter(masks.values())).shape
    out = np.zeros(shape, np.uint8)
    for value in sorted(masks, key=lambda v: (BY_VALUE[v].priority, v)):
        out[np.asarray(masks[value], bool)] = value
    return out


def one_hot(label_map: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """(len(classes), …) float32 one-hot of ``label_map`` over ``classes`` (their order is the channel order)."""
    validate(label_map, classes)
    return np.stack([(label_map == c) for c in classes]).astype(np.float32)


def from_segments(segments: Mapping[str, np.ndarray], shape: Optional[tuple[int, ...]] = None) -> np.ndarray:
    """A map from named binary masks (a Slicer segmentation's segments): names through :func:`value_of`."""
    merged: dict[int, np.ndarray] = {}
    values = values_of(segments, "The map")
    for name, mask in segments.items():
        value = values[name]
        merged[value] = np.asarray(mask, bool) | merged[value] if value in merged else np.asarray(mask, bool)
    return compose(merged, shape)
