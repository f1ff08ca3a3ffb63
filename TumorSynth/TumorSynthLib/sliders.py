"""What the panel's shape and texture sliders mean, and the fast shape preview they drive; no Qt.

Shape sliders fix volume, sphericity, elongation and flatness; the shape model fills every other shape feature
consistently (``shape.complete_features``). Texture sliders start from the texture source (a preset or a
measured segment) and set three of its features; the engine moves the source's other features along with them
(``radsynth.pipelines.texture_fill``). Their limits are the texture model's training range (:func:`texture_limits`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Optional

from radsynth import mrml
from radsynth.errors import RadSynthError
from radsynth.pipelines.registry import Option
from radsynth.volume import Volume

from .defaults import SHAPE_OPTIONS
from .logic import TumorSynthParameters, texture_choice
from .operations import TEXTURE_SLIDER_FEATURES, VOLUME, point_lps


@dataclasses.dataclass(frozen=True)
class Slider:
    feature: str
    label: str
    minimum: float
    maximum: float
    decimals: int
    start: float = 0.0     # before a model or texture source says better


def shape_slider(option: Option, decimals: int = 2) -> Slider:
    """A shape slider as the engine declares the option: its range and its default start."""
    label = option.help.split(" (")[0] + (f" ({option.unit})" if option.unit else "")
    return Slider(option.name, label, option.min, option.max, decimals, option.default)


#: the engine's shape options (radsynth.pipelines.tumor_ops.SHAPE_OPTIONS: volume, sphericity, elongation, flatness)
SHAPE_SLIDERS = tuple(shape_slider(o) for o in SHAPE_OPTIONS)
DEFAULT_VOLUME_ML = SHAPE_SLIDERS[0].start
#: texture slider limits for a model card without a training range; a card's range replaces them
_TEXTURE_LOOK = {"firstorder_Mean": ("Mean intensity (HU)", -500.0, 300.0, 0),
                 "firstorder_Entropy": ("Heterogeneity", 0.0, 7.0, 2),
                 "glcm_Contrast": ("Contrast", 0.0, 200.0, 1)}
TEXTURE_SLIDERS = tuple(Slider(f, *_TEXTURE_LOOK[f]) for f in TEXTURE_SLIDER_FEATURES)
#: integer positions of the log-scaled volume slider: equal steps are equal ratios, 0.1 mL and 100 mL alike
VOLUME_STEPS = 1000


def volume_from_position(position: int) -> float:
    lo, hi = math.log(SHAPE_SLIDERS[0].minimum), math.log(SHAPE_SLIDERS[0].maximum)
    return math.exp(lo + (hi - lo) * min(max(position, 0), VOLUME_STEPS) / VOLUME_STEPS)


def position_from_volume(volume_ml: float) -> int:
    lo, hi = math.log(SHAPE_SLIDERS[0].minimum), math.log(SHAPE_SLIDERS[0].maximum)
    t = (math.log(max(volume_ml, 1e-9)) - lo) / (hi - lo)
    return int(round(min(max(t, 0.0), 1.0) * VOLUME_STEPS))


def shape_defaults(shape_model, volume_ml: float = DEFAULT_VOLUME_ML) -> dict[str, float]:
    """The shape model's most typical shape at this volume, as slider values."""
    from radsynth.pipelines.shape import SLIDER_FEATURES, complete_features

    full = complete_features(shape_model, {VOLUME: volume_ml})
    return {k: float(full[k]) for k in SLIDER_FEATURES}


def texture_source_values(params: TumorSynthParameters) -> dict[str, float]:
    """The texture sliders' start values: the preset's, or measured on the texture segment (main thread, ~0.5 s);
    the same texture source a run uses (``logic.texture_choice``)."""
    values = texture_choice(params).features()
    return {k: float(values[k]) for k in TEXTURE_SLIDER_FEATURES}


def unfollowed_note(model_dir: Optional[str] = None) -> str:
    """What the panel says under the texture sliders when the model's card records that it does not follow some
    of them (``radsynth evaluate sliders --record``); empty when it follows them all or nothing was measured."""
    names = {s.feature: s.label for s in TEXTURE_SLIDERS}
    which = _card_info(model_dir)[1]
    if not which:
        return ""
    listed = "; ".join(f"{names[f]} (Spearman {r['spearman']:.2f}, slope {r['slope']:.2f})" for f, r in which.items())
    return (f"Measured on this texture model: it does not follow {listed}. Moving "
            f"{'this slider' if len(which) == 1 else 'these sliders'} changes the request, not much the result.")


def texture_limits(model_dir: Optional[str] = None, source: Optional[dict] = None) -> dict[str, tuple[float, float]]:
    """Texture slider limits: the range of the texture model's training tumours, widened to hold the source's value.

    Beyond that range the model has never seen a tumour (the demo model then renders lung), so the sliders stop
    there; a source measured outside it must still be shown as it is, not clipped into another request. A model
    whose card has no range (or cannot be read: the run will say why) keeps the wide default limits."""
    ranges = _card_info(model_dir)[0]
    limits = {}
    for spec in TEXTURE_SLIDERS:
        low, high = ranges.get(spec.feature, (spec.minimum, spec.maximum))
        if source and spec.feature in source:
            low, high = min(low, source[spec.feature]), max(high, source[spec.feature])
        scale = 10.0 ** spec.decimals  # outwards to the slider's precision, so both ends stay reachable
        limits[spec.feature] = (math.floor(low * scale) / scale, math.ceil(high * scale) / scale)
    return limits


def _card_info(model_dir: Optional[str]) -> tuple[dict, dict]:
    """(training range, unfollowed sliders) from the texture model's card; empty where it cannot be read."""
    try:  # torch arrives with the module's dependencies, installed on the first run
        from radsynth.models import CARD
        from radsynth.pipelines.loading import texture_folder
    except ImportError:
        return {}, {}
    card = texture_folder(model_dir) / CARD
    try:
        return _read_card_info(str(card), card.stat().st_mtime_ns)
    except OSError:
        return {}, {}


@functools.lru_cache(maxsize=4)
def _read_card_info(path: str, mtime_ns: int) -> tuple[dict, dict]:
    # the panel asks on every parameter change (each slider step); a card is ~0.2 MB of JSON
    from radsynth.models import read_card
    from radsynth.pipelines.texture_fill import card_training_range, unfollowed

    try:
        card = read_card(os.path.dirname(path))
        return card_training_range(card), unfollowed(card, TEXTURE_SLIDER_FEATURES)
    except (RadSynthError, KeyError, TypeError, ValueError):
        return {}, {}


@dataclasses.dataclass
class PreviewState:
    measured: dict                 # shape features of the previewed shape (frame resolution), incl. volume_ml
    node: object = None            # the temporary segmentation at the point; None without a point or on error
    error: Optional[str] = None    # why the shape could not be shown at the point


class ShapePreview:
    """Slider fast path: a generated shape (no diffusion) shown as a temporary segment at the clicked point.

    The segmentation node is a throw-away display: replaced on every update, never saved with the scene, removed
    by :meth:`clear`. The shape generator runs here, not in the worker: a preview must answer within a slider
    drag, also while the worker is busy with a synthesis; it is small (a few MB) and loads on the first preview.
    """

    NODE_NAME = "TumorSynth shape preview"
    COLOR = (1.0, 0.85, 0.2)

    def __init__(self, device: Optional[str] = None) -> None:
        self.device = device
        self._model = None
        self.node = None
        self._image_key: tuple = ()
        self._image: Optional[Volume] = None

    def _volume(self, node) -> Volume:
        # a slider drag asks many times in a row; reading a CT from its node copies tens of MB each time
        key = (node.GetID(), node.GetMTime(), node.GetImageData().GetMTime() if node.GetImageData() else 0)
        if key != self._image_key:
            self._image, self._image_key = mrml.volume_from_node(node), key
        return self._image

    def update(self, shape: dict, seed: int = 0, volume_node=None, point=None) -> PreviewState:
        """Generate the shape for these slider values; with a volume and a point, show it there."""
        from radsynth.pipelines import shape as shape_gen

        model = self.shape_model()
        mask, measured = shape_gen.preview(model, shape, seed=seed)
        state = PreviewState(measured)
        scene = volume_node.GetScene() if volume_node is not None else None
        if scene is None or point is None or point.GetNumberOfControlPoints() < 1:
            self.clear()
            return state
        try:
            frame, voxel_mm = shape_gen.scale_to_volume(mask, measured[VOLUME])
            placed = shape_gen.place_shape(self._volume(volume_node), point_lps(point), frame, voxel_mm)
        except RadSynthError as exc:
            self.clear()
            state.error = str(exc)
            return state
        self.clear()
        self.node = mrml.mask_to_segmentation_node(placed, scene, self.NODE_NAME, "preview", volume_node,
                                                   self.COLOR)
        self.node.SetSaveWithScene(False)
        state.node = self.node
        return state

    def shape_model(self):
        from radsynth.pipelines.shape import load_shape_model
        if self._model is None:
            self._model = load_shape_model(device=self.device or "auto")
        return self._model

    def clear(self) -> None:
        if self.node is not None and self.node.GetScene() is not None:
            mrml.remove_nodes(self.node.GetScene(), [self.node])
        self.node = None
