"""CTGenerate "Whole volume": generate a CT volume with latent diffusion, on MRML nodes; no Qt, no ``slicer.mrmlScene``.

The three job phases (``RadSynthLib.jobs``): :meth:`VolumeLogic.prepare` (main thread) checks the options against
the ``generate volume`` declaration, loads the model's card (size, spacing, body region, sampler and steps
refused by what the model supports) and, when a segmentation is chosen, turns its segments into one label map with
their names — segments the model cannot use and a missing required label (body) are said here, before any work;
:meth:`execute` (any thread) runs the operation once per variant (seeds seed, seed+1, ...); :meth:`apply` (main
thread) adds the volumes as new nodes, marked synthetic, in a folder when there are several, all or none.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import numpy as np

from radsynth import models, mrml
from radsynth.errors import InvalidMaskError, InvalidOptionError, RadSynthError
from radsynth.pipelines.generate import volume_ops
from radsynth.progress import CancelToken, ProgressFn, no_progress, span
from radsynth.volume import Volume, synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.jobs import EngineRequest
from RadSynthLib.workers import EngineRunner

OPERATION = volume_ops.VOLUME.name
MAX_VARIANTS = 16
#: the segmentation is read onto a grid this fine before the engine resamples it onto the model's
SEGMENTATION_MM = 2.0
DEMO_MODEL = "demo-volume-ldm"


@dataclasses.dataclass
class VolumeParameters:
    """What the user chose in the "Whole volume" section."""
    model: Optional[str] = None           # an installed model's name or a folder; None: the bundled demo
    size: Optional[tuple[int, int, int]] = None          # None: the model's default
    spacing: Optional[tuple[float, float, float]] = None
    body_region: Optional[str] = None
    steps: Optional[int] = None
    sampler: Optional[str] = None
    seed: int = 0
    variants: int = 1
    segmentation: Any = None              # a vtkMRMLSegmentationNode to follow (None: unguided)


@dataclasses.dataclass
class VolumeRequest(EngineRequest):
    model: Optional[str] = None
    size: Optional[str] = None
    spacing: Optional[str] = None
    body_region: Optional[str] = None
    steps: Optional[int] = None
    sampler: Optional[str] = None
    seed: int = 0
    segmentation: Optional[Volume] = None
    segment_names: Optional[dict] = None
    variants: int = 1
    notes: list = dataclasses.field(default_factory=list)
    model_name: str = ""


def model_card(model: Optional[str]) -> dict:
    """The card of the chosen model (name or folder; None the demo), read without loading any network."""
    from pathlib import Path

    if model is None:
        return models.find(DEMO_MODEL).card
    folder = Path(model)
    card = models.read_card(folder) if folder.is_dir() else models.find(model).card
    if card["kind"] not in volume_ops.MODEL_KINDS:
        raise InvalidOptionError(f"'{card.get('name')}' is a {card['kind']} model; choose a whole-volume model "
                                 f"({', '.join(volume_ops.MODEL_KINDS)}).")
    return card


def available_models() -> list[str]:
    """Installed whole-volume models by name, the demo first."""
    names = [m.name for kind in volume_ops.MODEL_KINDS for m in models.installed(kind)]
    return sorted(set(names), key=lambda n: (n != DEMO_MODEL, n))


def segmentation_labels(segmentation: Any) -> tuple[Volume, dict[int, str]]:
    """Every non-empty segment as one label map (segment i -> value i) on a grid covering the segmentation,
    with the segments' names."""
    seg = segmentation.GetSegmentation()
    ids = [seg.GetNthSegmentID(i) for i in range(seg.GetNumberOfSegments())]
    if not ids:
        raise InvalidMaskError(f"'{segmentation.GetName()}' has no segments.")
    bounds = [0.0] * 6
    segmentation.GetBounds(bounds)
    if not bounds[1] > bounds[0]:
        raise InvalidMaskError(f"Every segment of '{segmentation.GetName()}' is empty.")
    lo = np.array([-bounds[1], -bounds[3], bounds[4]])        # RAS bounds -> LPS corner
    extent = np.array([bounds[1] - bounds[0], bounds[3] - bounds[2], bounds[5] - bounds[4]])
    dims = [max(2, int(math.ceil(e / SEGMENTATION_MM)) + 1) for e in extent]
    grid = Volume(np.zeros(dims[::-1], np.uint8), tuple(float(v) for v in lo), (SEGMENTATION_MM,) * 3,
                  (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    label = np.zeros(grid.shape, np.uint16)
    names: dict[int, str] = {}
    for value, sid in enumerate(ids, start=1):
        try:
            mask = mrml.segment_to_mask(segmentation, sid, grid).array > 0
        except InvalidMaskError:
            continue                              # an empty segment adds nothing
        label[mask & (label == 0)] = value
        names[value] = seg.GetSegment(sid).GetName()
    if not names:
        raise InvalidMaskError(f"Every segment of '{segmentation.GetName()}' is empty.")
    return grid.with_array(label), names


def _triple(values: Optional[tuple]) -> Optional[str]:
    return None if values is None else ",".join(f"{v:g}" for v in values)


Runner = Callable[[Any, ProgressFn, CancelToken], Any]


class VolumeLogic:
    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or EngineRunner()

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare(self, params: VolumeParameters) -> VolumeRequest:
        from radsynth.nets import maisi_config as mc
        from radsynth.pipelines.generate import whole_volume as wv

        if not 1 <= int(params.variants) <= MAX_VARIANTS:
            raise InvalidOptionError(f"The variants must be between 1 and {MAX_VARIANTS} (got {params.variants}).")
        values = {"model": params.model, "size": _triple(params.size), "spacing": _triple(params.spacing),
                  "body_region": params.body_region or None, "steps": params.steps or None,
                  "sampler": params.sampler or None, "seed": params.seed}
        checked = inputs.check_options(OPERATION, values)
        card = model_card(params.model)
        grid = card.get("grid", {})
        size = wv.parse_triple(checked.get("size"), "output size", int) or grid.get("default_size")
        spacing = wv.parse_triple(checked.get("spacing"), "spacing", float) or grid.get("default_spacing_mm")
        regions = checked.get("body_region")
        mc.check_request(card, size, spacing, [r.strip() for r in regions.split(",")] if regions else None)
        train_steps = int(card["scheduler"].get("num_train_timesteps", 1000))
        if checked.get("steps") and not 1 <= checked["steps"] <= train_steps:
            raise InvalidOptionError(f"The steps must be between 1 and {train_steps} for this model.")
        segmentation, names, notes = None, None, []
        if params.segmentation is not None:
            segmentation, names = segmentation_labels(params.segmentation)
            mapping = wv.map_segments(sorted(names), names, card)   # unmappable or missing body: refused here
            notes = list(mapping.notes)
        name = params.segmentation.GetName() if params.segmentation is not None else card["name"]
        return VolumeRequest(operation=OPERATION, image=None, mask=None, input_name=name,
                             input_node_id=params.segmentation.GetID() if params.segmentation is not None else "",
                             model_dir=None, model=params.model, size=checked.get("size"),
                             spacing=checked.get("spacing"), body_region=regions, steps=checked.get("steps"),
                             sampler=checked.get("sampler"), seed=int(checked["seed"]), segmentation=segmentation,
                             segment_names={str(k): v for k, v in (names or {}).items()} or None,
                             variants=int(params.variants), notes=notes, model_name=card["name"])

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, request: VolumeRequest, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None) -> list:
        cancel = cancel or CancelToken()
        progress = progress or no_progress
        run = runner or self.runner
        out = []
        for i in range(request.variants):
            cancel.check()
            one = dataclasses.replace(request, seed=request.seed + i)
            label = f"variant {i + 1}/{request.variants}: " if request.variants > 1 else ""
            part = span(progress, i / request.variants, (i + 1) / request.variants, label)
            out.append(run(one, part, cancel))
        cancel.check()          # a Cancel after the last step still means "add nothing"
        return out

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, request: VolumeRequest, result: list, scene: Any) -> dict[str, Any]:
        """New volume nodes (marked synthetic): ``{"volume": first node, "volumes": [...], "warnings": [...]}``."""
        if scene is None:
            raise RadSynthError("There is no scene to add the result to.")
        reference = results.input_node(scene, request.input_node_id, request.input_name)
        folder = synthetic_name(f"{request.model_name} volumes") if len(result) > 1 else None
        placement = results.Placement(scene, reference, folder)
        added: list[Any] = []
        try:
            for i, res in enumerate(result):
                suffix = f" seed {request.seed + i}" if len(result) > 1 else ""
                node = mrml.volume_to_node(res.volume, scene, synthetic_name(f"{request.model_name}{suffix}"))
                added.append(node)
                node.SetAttribute(results.SOURCE_ATTRIBUTE, request.input_name)
                placement.place(node)
        except Exception:
            for node in added:
                results.remove_result(scene, {"volume": node})
            placement.undo()
            raise
        warnings = list(dict.fromkeys(w for res in result for w in res.warnings))
        return {"volume": added[0], "volumes": added, "warnings": warnings}

    def run(self, params: VolumeParameters, scene: Any = None, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None) -> dict[str, Any]:
        """All three phases on this thread (tests, scripting)."""
        request = self.prepare(params)
        scene = scene if scene is not None else (params.segmentation.GetScene() if params.segmentation else None)
        return self.apply(request, self.execute(request, progress, cancel), scene)
