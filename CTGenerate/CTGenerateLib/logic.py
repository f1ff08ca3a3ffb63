"""CTGenerate logic: grow a CT slice by slice from a seed slice, on MRML nodes; no Qt, no ``slicer.mrmlScene``.

The three phases of a RadSynth job (``RadSynthLib.jobs``): :meth:`CTGenerateLogic.prepare` (main thread) reads the
input node and refuses bad input (not 3D, not axial, seed slice outside, options out of range) before anything slow
starts; :meth:`CTGenerateLogic.execute` (any thread) runs ``generate slices`` through the runner; :meth:`apply`
(main thread) adds the grown volume as a new node beside the input. Unlike TumorSynth, a cancel keeps what is done:
the engine returns the finished slices and the node's name and provenance say "partial". The result has its own
grid (the seed's spacing and direction, extended along the axial axis), so it is added here rather than through
``RadSynthLib.results.add_result``, which requires the input's grid.

Live growth: ``prepare`` gives the engine a scratch folder (the operation's ``preview`` option), where the volume
grown so far is written after every slice, in this process or in the worker. :meth:`update_live` (main thread,
from the panel's timer while the job runs) shows it in one "growing" node, updated in place; :meth:`end_live`
removes that node and the folder — ``apply`` calls it before adding the result, the panel after a failed or
cancelled job, so the scene ends as if there had been no live view.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Any, Callable, Optional

import numpy as np

from radsynth import mrml
from radsynth.errors import InvalidOptionError, RadSynthError
from radsynth.pipelines.generate import slices as pipeline
from radsynth.pipelines.generate.slices_ops import SLICES
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.jobs import EngineRequest
from RadSynthLib.workers import EngineRunner

MODULE = "CTGenerate"
OPERATION = SLICES.name
PARTIAL_ATTRIBUTE = "RadSynth.Partial"
#: set on the node that shows a volume while it grows (removed when the run ends)
LIVE_ATTRIBUTE = "RadSynth.Growing"


def _default(name: str) -> Any:
    return SLICES.option(name).default


@dataclasses.dataclass
class CTGenerateParameters:
    """What the user chose in the panel; defaults are the operation's declarations'."""
    input_volume: Any = None
    seed_slice: Optional[int] = None      # None: unconditional (the input gives only the grid)
    direction: str = _default("direction")
    slices: int = _default("slices")
    k: Optional[int] = None               # None: the model card's
    icnet: bool = _default("icnet") == "on"
    sampler: str = _default("sampler")
    steps: Optional[int] = None           # None: the sampler's default
    seed: int = _default("seed")
    model_dir: Optional[str] = None       # None: the bundled demo model
    live: bool = True                     # show the volume while it grows


@dataclasses.dataclass
class Request(EngineRequest):
    seed_slice: Optional[int] = None
    direction: str = "up"
    slices: int = 8
    k: Optional[int] = None
    icnet: str = "on"
    sampler: str = "fast"
    steps: Optional[int] = None
    seed: int = 0
    preview: Optional[str] = None         # scratch folder of the live view (engine option)
    live_node_id: str = ""                # the growing node (main thread only)
    live_stamp: Any = None


def live_folder(enabled: bool) -> Optional[str]:
    return tempfile.mkdtemp(prefix="radsynth-growing-") if enabled else None


Runner = Callable[[Request, ProgressFn, CancelToken], Any]


def seed_slice_from_slice_node(volume_node: Any, slice_node: Any) -> int:
    """The volume's k index at a slice view's current plane (the red view's slice in the panel), rounded."""
    import vtk

    ras = [slice_node.GetSliceToRAS().GetElement(r, 3) for r in range(3)] + [1.0]
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetRASToIJKMatrix(matrix)
    ijk = matrix.MultiplyPoint(ras)
    return int(np.floor(ijk[2] + 0.5))


def add_volume(scene: Any, result: Any, name: str, source: str, placement: Any, reference: Any = None) -> Any:
    """A generated volume as a new node (marked synthetic, partial when cancelled) placed by ``placement``."""
    volume = result.volume
    if not volume.is_synthetic:
        volume.mark_synthetic(f"{MODULE} {result.operation}")
    node = None
    try:
        node = mrml.volume_to_node(volume, scene, name, reference=reference)
        node.SetAttribute(results.SOURCE_ATTRIBUTE, source)
        if result.settings.get("partial"):
            node.SetAttribute(PARTIAL_ATTRIBUTE, volume.metadata.get(PARTIAL_ATTRIBUTE, "1"))
        placement.place(node)
    except Exception:
        results.remove_result(scene, {"volume": node})
        raise
    return node


class CTGenerateLogic:
    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or EngineRunner()

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare(self, params: CTGenerateParameters) -> Request:
        values = {"seed_slice": params.seed_slice, "direction": params.direction, "slices": params.slices,
                  "k": params.k, "icnet": "on" if params.icnet else "off", "sampler": params.sampler,
                  "steps": params.steps or None, "seed": params.seed}
        checked = inputs.check_options(OPERATION, values)
        seeded = checked.get("seed_slice") is not None
        node = params.input_volume
        image = inputs.read_volume(node, "the CT volume to grow from" if seeded else
                                   "a volume whose grid the generated CT takes", ct=seeded)
        pipeline.check_volume(image)
        if seeded and not 0 <= checked["seed_slice"] < image.shape[0]:
            raise InvalidOptionError(f"The seed slice {checked['seed_slice']} is outside '{node.GetName()}', which "
                                     f"has slices 0..{image.shape[0] - 1}.")
        if not seeded and checked["direction"] != "up":
            raise InvalidOptionError("An unconditional volume grows up from an air slice; choose direction up, or "
                                     "pick a seed slice.")
        return Request(operation=OPERATION, image=image, mask=None, input_name=node.GetName(),
                       input_node_id=node.GetID(), model_dir=params.model_dir or None,
                       seed_slice=checked.get("seed_slice"), direction=checked["direction"],
                       slices=checked["slices"], k=checked.get("k"), icnet=checked["icnet"],
                       sampler=checked["sampler"], steps=checked.get("steps"), seed=checked["seed"],
                       preview=live_folder(params.live))

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, request: Request, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None):
        cancel = cancel or CancelToken()
        cancel.check()
        # no cancel.check() afterwards: a cancelled run returns the finished slices, labelled partial
        return (runner or self.runner)(request, progress or no_progress, cancel)

    # -- live view: main thread, while the job runs -------------------------------------------------------------
    def update_live(self, request: Any, scene: Any) -> Any:
        """Show the volume grown so far in the growing node (created on the first slice, then updated in place);
        returns the node, or None before the first slice."""
        volume = pipeline.read_preview(request.preview) if request.preview else None
        node = scene.GetNodeByID(request.live_node_id) if request.live_node_id else None
        if volume is None:
            return node
        stamp = os.stat(os.path.join(request.preview, pipeline.PREVIEW_FILE)).st_mtime_ns
        if node is not None and stamp == request.live_stamp:
            return node
        if node is None:
            reference = results.input_node(scene, request.input_node_id,
                                           getattr(request, "reference_name", "") or request.input_name)
            node = mrml.volume_to_node(volume, scene, synthetic_name(f"{request.input_name} growing"),
                                       reference=reference)
            node.SetAttribute(LIVE_ATTRIBUTE, "1")
            request.live_node_id = node.GetID()
        else:
            mrml.update_volume_node(node, volume)
        request.live_stamp = stamp
        return node

    def end_live(self, request: Any, scene: Any) -> None:
        """Remove the growing node and the live view's folder (idempotent)."""
        node = scene.GetNodeByID(request.live_node_id) if (scene is not None and request.live_node_id) else None
        if node is not None:
            results.remove_result(scene, {"volume": node})
        request.live_node_id = ""
        if request.preview:
            shutil.rmtree(request.preview, ignore_errors=True)

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, request: Request, result: Any, scene: Any) -> dict[str, Any]:
        """Add the grown volume as a new node beside the input: ``{"volume": node, "partial": bool}``."""
        if scene is None:
            raise RadSynthError("There is no scene to add the result to.")
        self.end_live(request, scene)
        partial = bool(result.settings.get("partial"))
        name = synthetic_name(f"{request.input_name} grown" + (" (partial)" if partial else ""))
        reference = results.input_node(scene, request.input_node_id, request.input_name)
        node = add_volume(scene, result, name, request.input_name, results.Placement(scene, reference), reference)
        return {"volume": node, "partial": partial}

    def run(self, params: CTGenerateParameters, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None) -> dict[str, Any]:
        request = self.prepare(params)
        result = self.execute(request, progress, cancel, runner)
        return self.apply(request, result, params.input_volume.GetScene())
