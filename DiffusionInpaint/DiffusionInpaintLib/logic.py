"""DiffusionInpaint logic on MRML nodes; no Qt, no ``slicer.mrmlScene``.

Two panel workflows, each the three phases of a RadSynth job (``RadSynthLib.jobs``: prepare on the main thread,
execute on any thread, apply on the main thread):

* **Fill region** (``fill``): a CT and a segment drawn with the Segment Editor; healthy tissue or a new texture.
  ``prepare`` turns the choices into a batch of one request per variant (seeds seed … seed + N − 1); a refusal,
  failure or cancel at any variant leaves the scene as it was.
* **Semantic map → CT**: ``auto-map`` builds a segmentation with one segment per label of the scheme (body, lungs,
  trachea, nodules; the nodule segments empty unless a nodule segment was given) so the user paints, erases or
  enlarges a nodule; ``render-map`` renders CT for the edited segmentation. The region rendered is the map's nodules
  plus every voxel the user changed from the map as it was built (an erased nodule's place included).

Results are new nodes under the input's study (``RadSynthLib.results``), volumes marked synthetic; inputs are never
modified.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import numpy as np

from radsynth import mrml
from radsynth.errors import InvalidMaskError, RadSynthError
from radsynth.pipelines.inpaint import AUTO_MAP, FILL, RENDER_MAP, labels
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import SYNTHETIC_SUFFIX, Volume, synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.jobs import EngineRequest
from RadSynthLib.workers import EngineRunner

from .defaults import MAX_VARIANTS

MODULE = "DiffusionInpaint"
FILL_OP, RENDER_OP, AUTO_OP = FILL.name, RENDER_MAP.name, AUTO_MAP.name
FILLED = results.SegmentSpec("filled region", results.TISSUE, (0.3, 0.6, 0.9))
RENDERED = results.SegmentSpec("rendered region", results.TISSUE, (0.9, 0.6, 0.2))
#: the map's segments: every structure of the label scheme but background, in the scheme's order
MAP_COLORS = {labels.BODY: (0.95, 0.8, 0.65), labels.LEFT_LUNG: (0.45, 0.7, 1.0),
              labels.RIGHT_LUNG: (0.25, 0.5, 0.9), labels.TRACHEA: (0.55, 0.9, 0.55),
              labels.NODULE: (0.9, 0.3, 0.2), labels.BENIGN: (0.95, 0.75, 0.2), labels.MALIGNANT: (0.75, 0.05, 0.1)}
MAP_SEGMENTS = tuple((lab.value, lab.name, MAP_COLORS[lab.value]) for lab in labels.LABELS
                     if lab.value != labels.BACKGROUND)
MAP_ATTRIBUTE = "RadSynth.SemanticMap"


def _default(op, name: str) -> Any:
    return op.option(name).default


@dataclasses.dataclass
class FillParameters:
    """The "Fill region" section's choices; defaults are ``fill``'s declarations'."""
    input_volume: Any = None
    segmentation: Any = None
    segment_id: str = ""
    mode: str = _default(FILL, "mode")
    strength: float = _default(FILL, "strength")
    steps: Optional[int] = None            # None: the model card's
    seed: int = _default(FILL, "seed")
    variants: int = 1
    margin_mm: float = _default(FILL, "margin_mm")
    feather_mm: float = _default(FILL, "feather_mm")
    model_dir: Optional[str] = None        # None: the bundled demo model


@dataclasses.dataclass
class MapParameters:
    """"Build map from CT": the CT and, optionally, a segment to draw on the map as a nodule."""
    input_volume: Any = None
    nodule_segmentation: Any = None
    nodule_segment_id: str = ""
    nodule_label: str = _default(AUTO_MAP, "nodule_label")


@dataclasses.dataclass
class RenderParameters:
    """"Render CT": the CT and the (edited) map segmentation; defaults are ``render-map``'s declarations'."""
    input_volume: Any = None
    map_segmentation: Any = None
    guidance: float = _default(RENDER_MAP, "guidance")
    steps: Optional[int] = None
    seed: int = _default(RENDER_MAP, "seed")
    margin_mm: float = _default(RENDER_MAP, "margin_mm")
    feather_mm: float = _default(RENDER_MAP, "feather_mm")
    model_dir: Optional[str] = None


@dataclasses.dataclass
class Request(EngineRequest):
    """One engine call; fields named like a declared option are offered to the engine (None: unset)."""
    mode: Optional[str] = None
    strength: Optional[float] = None
    steps: Optional[int] = None
    seed: Optional[int] = None
    margin_mm: Optional[float] = None
    feather_mm: Optional[float] = None
    guidance: Optional[float] = None
    label_map: Optional[Volume] = None
    nodules: Optional[Volume] = None
    nodule_label: Optional[str] = None
    built_map: Optional[Volume] = None     # render: the map as built, to find what the user changed
    map_name: str = ""
    suffix: str = ""                       # " #k" for the k-th of several variants

    NOT_OPTIONS = EngineRequest.NOT_OPTIONS + ("built_map", "map_name", "suffix")


#: runner(request, progress, cancel) -> radsynth.result.Result (RadSynthLib.workers.EngineRunner by default)
Runner = Callable[[Request, ProgressFn, CancelToken], Any]


def _base_name(name: str) -> str:
    return name[:-len(SYNTHETIC_SUFFIX)] if name.endswith(SYNTHETIC_SUFFIX) else name


def _request(operation: str, node: Any, image: Volume, mask: Optional[Volume], model_dir: Optional[str],
             **fields: Any) -> Request:
    return Request(operation=operation, image=image, mask=mask, input_name=node.GetName(), input_node_id=node.GetID(),
                   model_dir=model_dir or None, **fields)


def map_from_segmentation(segmentation_node: Any, image: Volume) -> Volume:
    """A uint8 label map on ``image``'s grid from a segmentation whose segments are named after the label scheme
    (priorities where they overlap); segments left empty (an erased nodule) add nothing. Every segment name the
    scheme does not know is named in one error."""
    if segmentation_node is None:
        raise InvalidMaskError("Select the semantic map segmentation (build it from the CT first).")
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
    names = {sid: segmentation.GetSegment(sid).GetName() for sid in ids}
    values = labels.values_of(names.values(), f"The segmentation '{segmentation_node.GetName()}'")
    masks: dict[int, np.ndarray] = {}
    for sid in ids:
        try:
            mask = mrml.segment_to_mask(segmentation_node, sid, image).array > 0
        except InvalidMaskError:      # an empty segment (e.g. a nodule erased or not painted yet)
            continue
        value = values[names[sid]]
        masks[value] = masks[value] | mask if value in masks else mask
    if not masks:
        raise InvalidMaskError(f"The segmentation '{segmentation_node.GetName()}' is empty: build the map from the "
                               "CT first.")
    return image.label_like(labels.compose(masks, image.shape))


def render_region(edited: np.ndarray, built: np.ndarray) -> np.ndarray:
    """Where to render: the map's nodules, and every voxel whose label the user changed (an erased nodule too)."""
    return np.isin(edited, labels.NODULES) | (edited != built)


class DiffusionInpaintLogic:
    """Fill a region, build a semantic map, render CT for it; ``runner`` decides where the engine runs."""

    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or EngineRunner()
        #: maps as "Build map from CT" made them, by segmentation node ID: what the user changed is rendered
        self.built_maps: dict[str, Volume] = {}

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare_fill(self, params: FillParameters) -> list[Request]:
        n = int(params.variants)
        if not 1 <= n <= MAX_VARIANTS:
            raise RadSynthError(f"Ask for between 1 and {MAX_VARIANTS} variants (got {n}).")
        checked = inputs.check_options(FILL_OP, {
            "mode": params.mode, "strength": params.strength, "steps": params.steps or None, "seed": params.seed,
            "margin_mm": params.margin_mm, "feather_mm": params.feather_mm})
        image = inputs.read_volume(params.input_volume)
        mask = inputs.read_segment(params.segmentation, params.segment_id, image,
                                   "the region to fill (draw it with the Segment Editor)")
        request = _request(FILL_OP, params.input_volume, image, mask, params.model_dir, mode=checked["mode"],
                           strength=checked["strength"], steps=checked.get("steps"), seed=checked["seed"],
                           margin_mm=checked["margin_mm"], feather_mm=checked["feather_mm"])
        return [dataclasses.replace(request, seed=request.seed + k, suffix=f" #{k + 1}" if n > 1 else "")
                for k in range(n)]

    def prepare_map(self, params: MapParameters) -> list[Request]:
        checked = inputs.check_options(AUTO_OP, {"nodule_label": params.nodule_label})
        image = inputs.read_volume(params.input_volume)
        nodules = None
        if params.nodule_segment_id:
            nodules = inputs.read_segment(params.nodule_segmentation, params.nodule_segment_id, image,
                                          "the nodule segment")
        return [_request(AUTO_OP, params.input_volume, image, None, None, nodules=nodules,
                         nodule_label=checked["nodule_label"])]

    def prepare_render(self, params: RenderParameters) -> list[Request]:
        checked = inputs.check_options(RENDER_OP, {
            "guidance": params.guidance, "steps": params.steps or None, "seed": params.seed,
            "margin_mm": params.margin_mm, "feather_mm": params.feather_mm})
        image = inputs.read_volume(params.input_volume)
        seg = params.map_segmentation
        label_map = map_from_segmentation(seg, image)
        built = self.built_maps.get(seg.GetID())
        return [_request(RENDER_OP, params.input_volume, image, None, params.model_dir, label_map=label_map,
                         built_map=built if built is not None and built.same_grid(image) else None,
                         map_name=seg.GetName(), guidance=checked["guidance"], steps=checked.get("steps"),
                         seed=checked["seed"], margin_mm=checked["margin_mm"], feather_mm=checked["feather_mm"])]

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, batch: list[Request], progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None) -> list[Any]:
        progress = progress or no_progress
        cancel = cancel or CancelToken()
        cancel.check()
        runner = runner or self.runner
        out = []
        for k, request in enumerate(batch):
            def span(fraction: float, stage: str, k=k, n=len(batch)) -> None:
                progress((k + fraction) / n, f"variant {k + 1} of {n}: {stage}" if n > 1 else stage)

            if request.operation == RENDER_OP:
                request = self._with_region(request, span, cancel)
            out.append(runner(request, span, cancel))
            cancel.check()
        # a cancel that arrives as the engine finishes still means "change nothing"
        cancel.check()
        return out

    @staticmethod
    def _with_region(request: Request, progress: ProgressFn, cancel: CancelToken) -> Request:
        built = request.built_map
        if built is None:   # not built in this session (a saved scene): the automatic map is deterministic
            from radsynth.pipelines.inpaint.auto_map import auto_map

            progress(0.0, "building the automatic map")
            built = auto_map(request.image).map
            cancel.check()
        region = render_region(request.label_map.array, built.array)
        if not region.any():
            raise InvalidMaskError(f"The map '{request.map_name}' has no nodule and is as it was built from the CT: "
                                   "paint a nodule (or erase one) in the Segment Editor, then render.")
        return dataclasses.replace(request, mask=request.image.label_like(region), built_map=None)

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, batch: list[Request], outcomes: list[Any], scene: Any) -> list[dict[str, Any]]:
        """New nodes per result, all or none: fill and render give ``volume`` (marked synthetic) and
        ``segmentation`` (the region); the map gives ``segmentation`` (one segment per label). Each dict also has
        ``warnings`` for the panel."""
        if len(outcomes) != len(batch):
            raise RadSynthError("The run returned a different number of results than requested; nothing was added.")
        first = batch[0]
        if first.operation == AUTO_OP:
            return [self._apply_map(first, outcomes[0], scene)]
        base = _base_name(first.input_name)
        word, segment = ("filled", FILLED) if first.operation == FILL_OP else ("rendered", RENDERED)
        items = []
        for request, result in zip(batch, outcomes):
            stem = f"{base} - {word}{request.suffix}"
            items.append((request, result, results.Output(
                synthetic_name(stem), f"{MODULE} {request.operation}", f"{stem} - {segment.name}", segment,
                attributes={"RadSynth.Operation": request.operation, "RadSynth.Seed": str(request.seed)})))
        added = results.add_results(scene, items, f"{base} - {word} variants")
        for nodes, result in zip(added, outcomes):
            nodes["warnings"] = list(result.warnings)
        return added

    def _apply_map(self, request: Request, result: Any, scene: Any) -> dict[str, Any]:
        if scene is None:
            raise RadSynthError("There is no scene to add the map to.")
        if not result.volume.same_grid(request.image):
            raise RadSynthError("The map does not lie on the CT's grid; nothing was added.")
        reference = results.input_node(scene, request.input_node_id, request.input_name)
        placement = results.Placement(scene, reference)
        node = None
        try:
            node = mrml.label_map_to_segmentation_node(result.volume, scene, f"{request.input_name} - semantic map",
                                                       MAP_SEGMENTS, reference)
            node.SetAttribute(results.SOURCE_ATTRIBUTE, request.input_name)
            node.SetAttribute(MAP_ATTRIBUTE, "1")
            placement.place(node)
        except Exception:
            results.remove_result(scene, {"segmentation": node})
            raise
        self.built_maps[node.GetID()] = result.volume
        return {"segmentation": node, "warnings": list(result.warnings)}

    # -- all three, for scripts and tests -----------------------------------------------------------------------
    def _run(self, batch: list[Request], scene: Any, progress, cancel, runner) -> list[dict[str, Any]]:
        return self.apply(batch, self.execute(batch, progress, cancel, runner), scene)

    def fill(self, params: FillParameters, progress=None, cancel=None, runner=None) -> list[dict[str, Any]]:
        return self._run(self.prepare_fill(params), params.input_volume.GetScene(), progress, cancel, runner)

    def build_map(self, params: MapParameters, progress=None, cancel=None, runner=None) -> dict[str, Any]:
        return self._run(self.prepare_map(params), params.input_volume.GetScene(), progress, cancel, runner)[0]

    def render(self, params: RenderParameters, progress=None, cancel=None, runner=None) -> dict[str, Any]:
        return self._run(self.prepare_render(params), params.input_volume.GetScene(), progress, cancel, runner)[0]
