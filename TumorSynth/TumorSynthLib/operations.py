"""TumorSynth operations on tumours: place a new one, remove, move, resize or re-texture one; N seeded variants.

The same three phases as :mod:`logic` (prepare on the main thread, execute on any thread, apply on the main
thread). ``prepare`` turns one parameter set into a *batch*, one request per variant (seeds seed … seed+N−1), so
"generate N variants" is the same prepare/execute/apply as a single run, and a refusal, failure or cancel at any
variant leaves the scene exactly as it was.

Every run adds new nodes and never touches its inputs; the outputs (a volume and a one-segment segmentation) are
valid inputs of the next operation, so a user can iterate on the latest result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

import numpy as np

from radsynth import mrml
from radsynth.errors import InvalidMaskError, RadSynthError, WorkerError
from radsynth.geometry import physical_to_index, ras_to_lps
from radsynth.pipelines import tumor_ops
from radsynth.pipelines.texture_fill import TEXTURE_SLIDER_FEATURES, texture_warnings
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import SYNTHETIC_SUFFIX, Volume, synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.workers import EngineRunner

from .defaults import MAX_VARIANTS, VARIANT_ETA
from .logic import (MODULE, REMOVED_SEGMENT, TUMOR_SEGMENT, Request, TumorSynthParameters, engine_settings,
                    prepare_texture, texture_target)

PLACE, REMOVE, MOVE, RESIZE, RETEXTURE = (tumor_ops.PLACE.name, tumor_ops.REMOVE.name, tumor_ops.MOVE.name,
                                          tumor_ops.RESIZE.name, tumor_ops.RETEXTURE.name)
OPERATIONS = (PLACE, REMOVE, MOVE, RESIZE, RETEXTURE)
#: engine shape modes: a generated shape at the point, or with a painted region: as drawn / inside / around it
SHAPE_MODES = tumor_ops.SHAPE_MODES
SHAPE_GENERATE, SHAPE_PAINTED, SHAPE_INSIDE, SHAPE_AROUND = SHAPE_MODES
SHAPE_FEATURES = tuple(o.name for o in tumor_ops.SHAPE_OPTIONS)
VOLUME = SHAPE_FEATURES[0]
#: operation -> (word in the output names, segment)
_OUTPUT = {PLACE: ("placed", TUMOR_SEGMENT), MOVE: ("moved", TUMOR_SEGMENT), RESIZE: ("resized", TUMOR_SEGMENT),
           RETEXTURE: ("retextured", TUMOR_SEGMENT), REMOVE: ("removed", REMOVED_SEGMENT)}
_VERB = {REMOVE: "remove", MOVE: "move", RESIZE: "resize", RETEXTURE: "re-texture"}


@dataclasses.dataclass
class OperationParameters(TumorSynthParameters):
    """The panel's choices. ``segmentation``/``segment_id`` name the existing tumour (remove, move, resize,
    re-texture) and, as in :class:`TumorSynthParameters`, the default texture segmentation."""
    operation: str = PLACE
    point: Any = None                      # markups node: its first control point (move target, place point)
    painted_segmentation: Any = None       # place with shape_mode painted / inside / around
    painted_segment_id: str = ""
    shape_mode: str = SHAPE_GENERATE
    organ_segmentation: Any = None         # optional: keep a placed tumour inside this segment
    organ_segment_id: str = ""
    shape: dict = dataclasses.field(default_factory=dict)              # volume_ml and shape_* slider values
    texture_overrides: dict = dataclasses.field(default_factory=dict)  # TEXTURE_SLIDER_FEATURES values
    variants: int = 1
    eta: Optional[float] = None            # None: the model's default, VARIANT_ETA for several variants


@dataclasses.dataclass
class OperationRequest(Request):
    point_lps: Optional[tuple] = None
    shift_lps: Optional[tuple] = None
    painted: Optional[Volume] = None
    shape_mode: str = SHAPE_GENERATE
    organ: Optional[Volume] = None
    shape_features: dict = dataclasses.field(default_factory=dict)
    texture_overrides: dict = dataclasses.field(default_factory=dict)
    others: list = dataclasses.field(default_factory=list)   # move: other tumours the new place must not touch
    eta: Optional[float] = None
    suffix: str = ""                       # " #k" for the k-th of several variants

    def option_values(self) -> dict[str, Any]:
        # the engine's names for what the panel calls otherwise; empty means "not set"
        return dict(super().option_values(), volume_ml=self.shape_features.get(VOLUME),
                    overrides=self.texture_overrides or None, others=self.others or None)


@dataclasses.dataclass
class Outcome:
    """One variant's TumorResult and what the panel shows beside the sliders."""
    result: Any
    targets: dict      # slider feature -> requested value (only the ones the operation requested)
    measured: dict     # slider feature -> value measured on the result


# -- reading the scene (main thread) -------------------------------------------------------------------------------
def check_site(request: "OperationRequest", progress: ProgressFn) -> None:
    """Refuse a new tumour in the air outside the body or outside the chosen organ (as the CLI does)."""
    from radsynth.placement import Site
    if request.operation not in (PLACE, MOVE):
        return
    progress(0.0, "finding the body")
    site = Site(request.image)
    organ = request.organ.array > 0 if request.organ is not None else None
    if request.operation == MOVE:
        site.check_region(site.shifted(request.mask.array > 0, request.shift_lps), "The moved tumour")
    elif request.painted is not None:
        site.check_region(request.painted.array > 0, "The painted region", organ, "the organ segment")
    else:
        site.check_point(request.point_lps, organ, "the organ segment")


def point_lps(markups) -> tuple[float, float, float]:
    """The first control point of a markups node, in world LPS (the engine's frame)."""
    if markups is None or markups.GetNumberOfControlPoints() < 1:
        raise RadSynthError("Click a point in the image where the tumour should go (place a markups point).")
    ras = [0.0, 0.0, 0.0]
    markups.GetNthControlPointPositionWorld(0, ras)
    return ras_to_lps(ras)


def voxel_at(image: Volume, lps) -> tuple[int, int, int]:
    """(k, j, i) of the voxel containing a physical point; refuses points outside the image."""
    return physical_to_index(image, lps)


def centroid_lps(mask: Volume) -> np.ndarray:
    return mask.index_to_physical(np.argwhere(mask.array > 0).mean(0)[None])[0]


def _other_segments(params: "OperationParameters", image: Volume) -> list[Volume]:
    """The moved tumour's segmentation's other (non-empty) segments: the tumour must not land on one of them."""
    segmentation = params.segmentation.GetSegmentation()
    others = []
    for i in range(segmentation.GetNumberOfSegments()):
        sid = segmentation.GetNthSegmentID(i)
        if sid in (params.segment_id, params.organ_segment_id):
            continue
        try:
            others.append(mrml.segment_to_mask(params.segmentation, sid, image))
        except InvalidMaskError:   # an empty segment: nothing to collide with
            continue
    return others


def _numbers(values: dict, allowed, what: str) -> dict[str, float]:
    out = {}
    for name, value in (values or {}).items():
        if name not in allowed:
            raise RadSynthError(f"{name} is not a {what} slider; the sliders are {', '.join(allowed)}.")
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise RadSynthError(f"The {what} slider {name} must be a number (got {value!r}).")
        out[name] = float(value)
    return out


def _base_name(name: str) -> str:
    """The input name without the synthetic mark, so iterated results read "lung1 - placed - moved - synthetic"."""
    return name[:-len(SYNTHETIC_SUFFIX)] if name.endswith(SYNTHETIC_SUFFIX) else name


class OperationsLogic:
    """Place / remove / move / resize / re-texture on MRML nodes; ``runner`` decides where the pipeline runs
    (by default an :class:`EngineRunner` in this process; the module passes its worker-backed one)."""

    def __init__(self, runner=None) -> None:
        self.runner = runner or EngineRunner()

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare(self, params: OperationParameters) -> list[OperationRequest]:
        op = params.operation
        if op not in OPERATIONS:
            raise RadSynthError(f"Unknown operation {op!r}; choose one of {', '.join(OPERATIONS)}.")
        n = int(params.variants)
        if not 1 <= n <= MAX_VARIANTS:
            raise RadSynthError(f"Ask for between 1 and {MAX_VARIANTS} variants (got {n}).")
        eta = params.eta if params.eta is not None else (VARIANT_ETA if n > 1 else None)
        settings = engine_settings(op, params, eta=eta)
        image = inputs.read_volume(params.input_volume)
        node = params.input_volume
        request = OperationRequest(
            operation=op, image=image, mask=None, input_name=node.GetName(), input_node_id=node.GetID(),
            steps=settings["steps"], seed=settings["seed"], guidance=settings["guidance"],
            model_dir=params.model_dir or None, eta=settings["eta"])
        shape = _numbers(params.shape, SHAPE_FEATURES, "shape")
        if op == PLACE:
            self._prepare_place(params, request, shape)
        else:
            request.mask = inputs.read_segment(params.segmentation, params.segment_id, image,
                                               f"the tumour segment to {_VERB[op]}")
        if op == MOVE:
            point = point_lps(params.point)
            voxel_at(image, point)
            request.point_lps = point
            request.shift_lps = tuple(float(v) for v in np.asarray(point) - centroid_lps(request.mask))
            request.others = _other_segments(params, image)
        elif op == RESIZE:
            if VOLUME not in shape:
                raise RadSynthError("Set the new tumour volume (mL) with the volume slider.")
            request.shape_features = {VOLUME: shape[VOLUME]}
        if op in (PLACE, RETEXTURE):
            prepare_texture(params, request)
            request.texture_overrides = _numbers(params.texture_overrides, TEXTURE_SLIDER_FEATURES, "texture")
        return [dataclasses.replace(request, seed=request.seed + k, suffix=f" #{k + 1}" if n > 1 else "")
                for k in range(n)]

    @staticmethod
    def _prepare_place(params: OperationParameters, request: OperationRequest, shape: dict) -> None:
        image = request.image
        if params.shape_mode not in SHAPE_MODES:
            raise RadSynthError(f"Unknown shape mode {params.shape_mode!r}; choose one of {', '.join(SHAPE_MODES)}.")
        request.shape_mode = params.shape_mode
        if params.shape_mode == SHAPE_GENERATE:
            request.point_lps = point_lps(params.point)
            where = voxel_at(image, request.point_lps)
            if VOLUME not in shape:
                raise RadSynthError("Set the tumour volume (mL) with the volume slider.")
            request.shape_features = shape
        else:
            request.painted = inputs.read_segment(params.painted_segmentation, params.painted_segment_id, image,
                                                  "the painted region (draw it with the Segment Editor)")
            where = tuple(int(v) for v in np.round(np.argwhere(request.painted.array > 0).mean(0)))
            # the generated shape takes the painted region's volume, not the slider's
            request.shape_features = {k: v for k, v in shape.items() if k != VOLUME}
        if params.organ_segment_id:
            request.organ = inputs.read_segment(params.organ_segmentation or params.segmentation,
                                                params.organ_segment_id, image, "the organ segment")
            if not request.organ.array[where]:
                raise InvalidMaskError("The selected point is outside the selected organ; click inside the organ.")

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, batch: list[OperationRequest], progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner=None) -> list[Outcome]:
        progress = progress or no_progress
        cancel = cancel or CancelToken()
        cancel.check()
        runner = runner or self.runner
        first, n = batch[0], len(batch)
        check_site(first, progress)   # seconds of body-mask work: here, off the main thread
        cancel.check()
        target = None
        if first.operation in (PLACE, RETEXTURE):
            target = texture_target(first, progress, cancel)
        outcomes = []
        for k, request in enumerate(batch):
            def span(fraction: float, stage: str, k=k) -> None:
                progress((k + fraction) / n, f"variant {k + 1} of {n}: {stage}" if n > 1 else stage)

            if target is not None:
                request = dataclasses.replace(request, target=target)
            result = runner(request, span, cancel)
            cancel.check()
            outcomes.append(_outcome(request, result))
        # a cancel that arrives as the pipeline finishes still means "change nothing"
        cancel.check()
        return outcomes

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, batch: list[OperationRequest], outcomes: list[Outcome], scene) -> list[dict[str, Any]]:
        """Per variant: new ``volume``, ``segmentation`` (+ its ``segment_id``), ``table`` (when the operation
        synthesized), with ``targets``, ``measured`` and ``warnings`` (requests beyond the model's training) for the
        panel; all variants are added, or none. Several variants are grouped in one subject-hierarchy folder."""
        if len(outcomes) != len(batch):
            raise WorkerError("The run returned a different number of results than requested; nothing was added.")
        items = [(request, outcome.result, output(request)) for request, outcome in zip(batch, outcomes)]
        shown = [dict(targets=o.targets, measured=o.measured, warnings=texture_warnings(o.result.settings))
                 for o in outcomes]
        first = batch[0]
        folder = f"{_base_name(first.input_name)} - {_OUTPUT[first.operation][0]} variants"
        added = results.add_results(scene, items, folder)
        for nodes, extra in zip(added, shown):
            nodes.update(segment_id=nodes["segmentation"].GetSegmentation().GetNthSegmentID(0), **extra)
        return added

    # -- all three, for scripts and tests -----------------------------------------------------------------------
    def run(self, params: OperationParameters, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, runner=None) -> list[dict[str, Any]]:
        batch = self.prepare(params)
        outcomes = self.execute(batch, progress, cancel, runner)
        return self.apply(batch, outcomes, params.input_volume.GetScene())


def output(request: OperationRequest) -> results.Output:
    word, segment = _OUTPUT[request.operation]
    stem = f"{_base_name(request.input_name)} - {word}{request.suffix}"
    tail = "removed region" if request.operation == REMOVE else "tumor"
    return results.Output(synthetic_name(stem), f"{MODULE} {request.operation}", f"{stem} - {tail}", segment,
                          f"{stem} - features", attributes={"RadSynth.Operation": request.operation,
                                                            "RadSynth.Seed": str(request.seed)},
                          table_attributes={"RadSynth.TextureSource": request.texture_label}
                          if request.texture_label else {})


def _outcome(request: OperationRequest, result) -> Outcome:
    from radsynth.shape_features import fast_shape_features

    targets = dict(request.shape_features)
    measured = {}
    mask = result.mask.array
    if mask.any():
        measured = fast_shape_features(mask, np.asarray(result.mask.spacing)[::-1])
        measured[VOLUME] = measured["shape_MeshVolume"] / 1000.0
    for name, target, achieved in result.features or ():
        if name in TEXTURE_SLIDER_FEATURES:
            targets[name], measured[name] = target, achieved
    return Outcome(result, targets, measured)
