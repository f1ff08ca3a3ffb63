"""CTGenerate "Choose organs": generate a CT that follows a segmentation's organs, on MRML nodes; Qt-free.

prepare (main thread) turns the segmentation into a label map on the reference volume's grid — every segment
named in the label scheme (``radsynth.pipelines.inpaint.labels``: body, left lung, right lung, trachea, nodule and
their aliases; a segment with another name is refused by name, so nothing is silently dropped) — and checks the
options against the ``generate organs`` declaration. The ticked segments are the organs kept; the engine
relabels the others to the organ around them. execute (any thread) runs the variants one after another (seeds
seed, seed + 1, …); a cancel keeps the variants done and the finished slices of the current one (partial). apply
(main thread) adds one volume node per variant, in a folder when there are several. Live growth as for slices
(``logic.CTGenerateLogic.update_live``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np

from radsynth import mrml
from radsynth.errors import CancelledError, InvalidMaskError, InvalidOptionError, RadSynthError
from radsynth.pipelines.generate.organs import organ_values
from radsynth.pipelines.generate.slices_ops import ORGANS
from radsynth.pipelines.inpaint import labels
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.jobs import EngineRequest

from .logic import CTGenerateLogic, add_volume, live_folder

OPERATION = ORGANS.name
MAX_VARIANTS = 16


def _default(name: str) -> Any:
    return ORGANS.option(name).default


@dataclasses.dataclass
class OrganParameters:
    """What the user chose in the "Choose organs" section."""
    segmentation: Any = None
    reference_volume: Any = None          # the grid of the map (None: the segmentation's reference geometry)
    keep: Optional[list[str]] = None      # ticked segment names (None: all)
    start: Optional[int] = None           # None: the lowest slice holding an organ
    slices: int = _default("slices")
    guidance: float = _default("guidance")
    icnet: bool = _default("icnet") == "on"
    sampler: str = _default("sampler")
    steps: Optional[int] = None
    seed: int = _default("seed")
    variants: int = 1
    model_dir: Optional[str] = None
    live: bool = True


@dataclasses.dataclass
class OrganRequest(EngineRequest):
    organ_map: Any = None
    keep: Optional[str] = None
    start: Optional[int] = None
    slices: int = 8
    guidance: float = 1.0
    icnet: str = "on"
    sampler: str = "fast"
    steps: Optional[int] = None
    seed: int = 0
    variants: int = 1
    reference_name: str = ""
    preview: Optional[str] = None
    live_node_id: str = ""
    live_stamp: Any = None


def segment_names(segmentation: Any) -> list[tuple[str, str]]:
    """(segment id, name) of every segment, in the segmentation's order."""
    seg = segmentation.GetSegmentation()
    return [(seg.GetNthSegmentID(i), seg.GetNthSegment(i).GetName()) for i in range(seg.GetNumberOfSegments())]


def reference_of(segmentation: Any, reference: Any) -> Any:
    if reference is not None:
        return reference
    role = segmentation.GetReferenceImageGeometryReferenceRole()
    node = segmentation.GetNodeReference(role)
    if node is None:
        raise InvalidOptionError(f"'{segmentation.GetName()}' has no reference volume: select the CT it was drawn "
                                 "on, whose grid the generated CT takes.")
    return node


def segmentation_map(segmentation: Any, reference: Any):
    """The segmentation as a label-scheme map (Volume, uint8) on ``reference``'s grid."""
    if segmentation is None:
        raise InvalidMaskError("Select a segmentation (for example TotalSegmentator's, or DiffusionInpaint's "
                               "automatic map).")
    segments = segment_names(segmentation)
    if not segments:
        raise InvalidMaskError(f"'{segmentation.GetName()}' has no segments.")
    values = {sid: labels.value_of(name) for sid, name in segments}   # an unknown name is refused by name
    grid = inputs.read_volume(reference, "the volume whose grid the generated CT takes", ct=False)
    masks: dict[int, np.ndarray] = {}
    for sid, name in segments:
        try:
            mask = mrml.segment_to_mask(segmentation, sid, grid).array > 0
        except InvalidMaskError:
            continue                      # an empty segment adds nothing
        v = values[sid]
        masks[v] = mask | masks[v] if v in masks else mask
    if not masks:
        raise InvalidMaskError(f"Every segment of '{segmentation.GetName()}' is empty.")
    return grid, grid.label_like(labels.compose(masks, grid.shape))


class OrgansLogic(CTGenerateLogic):
    """The organs workflow; shares the runner, the live view and node adding with the slices workflow."""

    def prepare(self, params: OrganParameters) -> OrganRequest:  # type: ignore[override]
        values = {"keep": None, "start": params.start, "slices": params.slices, "guidance": params.guidance,
                  "icnet": "on" if params.icnet else "off", "sampler": params.sampler,
                  "steps": params.steps or None, "seed": params.seed}
        checked = inputs.check_options(OPERATION, values)
        if not 1 <= int(params.variants) <= MAX_VARIANTS:
            raise InvalidOptionError(f"Ask for 1 to {MAX_VARIANTS} variants.")
        reference = reference_of(params.segmentation, params.reference_volume) if params.segmentation else None
        grid, organ_map = segmentation_map(params.segmentation, reference)
        keep = None
        if params.keep is not None:
            keep_values = organ_values(params.keep)
            if not keep_values:
                raise InvalidOptionError("Tick at least one organ to keep.")
            keep = ",".join(labels.BY_VALUE[v].name for v in keep_values)
        count = organ_map.shape[0]
        start = checked.get("start")
        if start is not None and not 0 <= start < count:
            raise InvalidOptionError(f"The start slice {start} is outside '{reference.GetName()}', which has slices "
                                     f"0..{count - 1}.")
        return OrganRequest(operation=OPERATION, image=grid, mask=None, input_name=params.segmentation.GetName(),
                            input_node_id=reference.GetID(), model_dir=params.model_dir or None,
                            organ_map=organ_map, keep=keep, start=start, slices=checked["slices"],
                            guidance=checked["guidance"], icnet=checked["icnet"], sampler=checked["sampler"],
                            steps=checked.get("steps"), seed=checked["seed"], variants=int(params.variants),
                            reference_name=reference.GetName(), preview=live_folder(params.live))

    def execute(self, request: OrganRequest, progress: Optional[ProgressFn] = None,  # type: ignore[override]
                cancel: Optional[CancelToken] = None, runner=None):
        """The variants' results (a list); a cancel keeps those done and the current one's finished slices."""
        cancel = cancel or CancelToken()
        progress = progress or no_progress
        cancel.check()
        done: list[Any] = []
        for i in range(request.variants):
            one = dataclasses.replace(request, seed=request.seed + i)
            label = f"variant {i + 1}/{request.variants}: " if request.variants > 1 else ""

            def step(fraction, stage, i=i, label=label):
                progress((i + fraction) / request.variants, label + stage)

            try:
                result = (runner or self.runner)(one, step, cancel)
            except CancelledError:
                if done:
                    break
                raise
            done.append(result)
            if result.settings.get("partial") or cancel.cancelled:
                break
        return done

    def apply(self, request: OrganRequest, result: Any, scene: Any) -> dict[str, Any]:  # type: ignore[override]
        """One volume node per variant: ``{"volume": first node, "volumes": [...], "partial": bool}``."""
        if scene is None:
            raise RadSynthError("There is no scene to add the result to.")
        self.end_live(request, scene)
        reference = results.input_node(scene, request.input_node_id, request.reference_name)
        many = request.variants > 1
        placement = results.Placement(scene, reference, folder=f"{request.input_name} organs" if many else None)
        nodes = []
        try:
            for i, one in enumerate(result):
                partial = bool(one.settings.get("partial"))
                name = synthetic_name(f"{request.input_name} organs" + (f" {i + 1}" if many else "")
                                      + (" (partial)" if partial else ""))
                nodes.append(add_volume(scene, one, name, request.input_name, placement, reference))
        except Exception:
            for node in nodes:
                results.remove_result(scene, {"volume": node})
            placement.undo()
            raise
        partial = any(r.settings.get("partial") for r in result) or len(result) < request.variants
        return {"volume": nodes[0], "volumes": nodes, "partial": partial}

    def run(self, params: OrganParameters, progress: Optional[ProgressFn] = None,  # type: ignore[override]
            cancel: Optional[CancelToken] = None, runner=None) -> dict[str, Any]:
        request = self.prepare(params)
        result = self.execute(request, progress, cancel, runner)
        return self.apply(request, result, params.segmentation.GetScene())
