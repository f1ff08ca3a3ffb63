"""TumorSynth logic: MRML nodes in, new MRML nodes out; no Qt, no ``slicer.mrmlScene``.

The work is split in three phases so that the panel never blocks and MRML is only touched on the main thread:

1. :meth:`TumorSynthLogic.prepare` (main thread) reads the nodes into :class:`~radsynth.volume.Volume` objects and
   refuses bad input before anything slow starts;
2. :meth:`TumorSynthLogic.execute` (any thread) measures the texture target and runs the pipeline, in process or
   in the background worker; it never sees a node;
3. :meth:`TumorSynthLogic.apply` (main thread) adds the results as new nodes; the input nodes are never modified.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any, Callable, Optional

from radsynth import mrml
from radsynth.errors import InvalidImageError, InvalidMaskError, RadSynthError, WorkerError
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import Volume, check_ct, synthetic_name
from radsynth.pipelines import registry
from radsynth.pipelines.tumor_ops import GUIDANCE

DEFAULT_GUIDANCE = GUIDANCE.default

REMOVE, SYNTHESIZE = "remove", "synthesize"
OPERATIONS = (REMOVE, SYNTHESIZE)
TEXTURE_SEGMENT, TEXTURE_PRESET = "segment", "preset"
TEXTURE_SOURCES = (TEXTURE_SEGMENT, TEXTURE_PRESET)

TUMOR_COLOR = (0.9, 0.3, 0.2)
REMOVED_COLOR = (0.3, 0.6, 0.9)


@dataclasses.dataclass
class TumorSynthParameters:
    """What the user chose in the panel; node fields hold MRML nodes."""
    operation: str = SYNTHESIZE
    input_volume: Any = None
    segmentation: Any = None
    segment_id: str = ""
    texture_source: str = TEXTURE_PRESET
    texture_segmentation: Any = None     # None: the input segmentation
    texture_segment_id: str = ""
    texture_volume: Any = None           # None: the input volume
    preset: str = ""
    steps: Optional[int] = None          # None: the model's default
    seed: int = 0
    guidance: float = DEFAULT_GUIDANCE
    model_dir: Optional[str] = None      # None: the bundled models


@dataclasses.dataclass
class Request:
    """Everything ``execute`` needs, as plain data: safe to hand to another thread or process."""
    operation: str
    image: Volume
    mask: Volume
    input_name: str
    input_node_id: str
    target: Optional[dict[str, float]] = None   # preset values; None when measured from a segment
    texture_image: Optional[Volume] = None
    texture_mask: Optional[Volume] = None
    texture_label: str = ""
    steps: Optional[int] = None
    seed: int = 0
    guidance: float = DEFAULT_GUIDANCE
    model_dir: Optional[str] = None

    def engine_options(self, target: Optional[dict]) -> dict[str, Any]:
        """What the engine's ``Runner`` takes for this operation (``target``: the measured texture)."""
        names = registry.get(self.operation).option_names
        return {k: v for k, v in self._option_values(target).items() if k in names and v is not None}

    def _option_values(self, target: Optional[dict]) -> dict[str, Any]:
        return {"target": target, "guidance": self.guidance, "steps": self.steps, "seed": self.seed}


#: runner(request, target, progress, cancel) -> radsynth.result.Result
Runner = Callable[[Request, Optional[dict], ProgressFn, CancelToken], Any]


class EngineRunner:
    """Runs a request (any operation, the panel's manipulations too) with ``radsynth.worker.Runner``: in
    this process, or in the background worker.

    One ``Runner`` per model folder keeps its models loaded between runs (loading takes seconds); choosing
    another folder drops the old models first, since a model set can hold hundreds of MB.
    """

    def __init__(self, worker: bool = False, device: Optional[str] = None, client=None) -> None:
        self.worker, self.device, self.client = worker, device, client
        self._runner = None
        self._model_dir: Optional[str] = None
        self._lock = threading.Lock()

    def _runner_for(self, model_dir: Optional[str]):
        from radsynth.worker import Runner  # no torch here: the pipeline is imported where it runs

        with self._lock:
            if self._runner is None or model_dir != self._model_dir:
                self.close()
                self._runner = Runner(worker=self.worker, model_dir=model_dir, device=self.device,
                                           client=self.client)
                self._model_dir = model_dir
            return self._runner

    def __call__(self, request: Request, target: Optional[dict], progress: ProgressFn, cancel: CancelToken):
        runner = self._runner_for(request.model_dir)
        return runner(request.operation, request.image, request.mask, progress=progress, cancel=cancel,
                      **request.engine_options(target))

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None


class TumorSynthLogic:
    """Remove or synthesize tumours on MRML nodes; ``runner`` decides where the pipeline runs."""

    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or EngineRunner()

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare(self, params: TumorSynthParameters) -> Request:
        if params.operation not in OPERATIONS:
            raise RadSynthError(f"Unknown operation {params.operation!r}; choose remove or synthesize.")
        image = read_input(params)
        node = params.input_volume
        mask = mrml.segment_to_mask(params.segmentation, params.segment_id, image)
        request = Request(operation=params.operation, image=image, mask=mask, input_name=node.GetName(),
                          input_node_id=node.GetID(), steps=int(params.steps) if params.steps else None,
                          seed=int(params.seed), guidance=float(params.guidance), model_dir=params.model_dir or None)
        if params.operation == SYNTHESIZE:
            prepare_texture(params, request)
        return request

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, request: Request, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None):
        progress = progress or no_progress
        cancel = cancel or CancelToken()
        cancel.check()
        target = texture_target(request, progress, cancel) if request.operation == SYNTHESIZE else None
        result = (runner or self.runner)(request, target, progress, cancel)
        # a cancel that arrives as the pipeline finishes still means "change nothing"
        cancel.check()
        return result

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, request: Request, result, scene) -> dict[str, Any]:
        """Add the result as new nodes: ``volume``, ``segmentation`` and (synthesis only) ``table``."""
        name = request.input_name
        if request.operation == REMOVE:
            return add_result_nodes(request, result, scene, synthetic_name(name), f"{name} - removed region",
                                    "removed region", REMOVED_COLOR)
        return add_result_nodes(request, result, scene, synthetic_name(name), f"{name} - synthetic tumor",
                                "synthetic tumor", TUMOR_COLOR, f"{name} - tumor features")

    # -- all three, for scripts and tests -----------------------------------------------------------------------
    def run(self, params: TumorSynthParameters, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None) -> dict[str, Any]:
        request = self.prepare(params)
        result = self.execute(request, progress, cancel, runner)
        return self.apply(request, result, params.input_volume.GetScene())


# -- shared by every TumorSynth operation (here and in operations.py) ---------------------------------------------
def read_input(params: TumorSynthParameters) -> Volume:
    """The input CT as a Volume, after the checks every operation needs; refuses before anything slow starts."""
    node = params.input_volume
    if node is None:
        raise InvalidImageError("Select the CT volume to modify.")
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise InvalidImageError(f"'{node.GetName()}' is a label map; select the CT image itself.")
    if node.GetScene() is None:
        raise InvalidImageError(f"'{node.GetName()}' is not in the scene.")
    if params.steps is not None and int(params.steps) < 1:
        raise RadSynthError("The number of steps must be at least 1.")
    if params.guidance < 0:
        raise RadSynthError("The guidance strength cannot be negative.")
    image = mrml.volume_from_node(node)
    check_ct(image)
    return image


def prepare_texture(params: TumorSynthParameters, request: Request) -> None:
    """Fill the request's texture source: preset values now, or the segment to measure in ``execute``."""
    from radsynth import radiomics

    if params.texture_source == TEXTURE_PRESET:
        if not params.preset:
            raise RadSynthError("Choose a texture preset, or take the texture from a segment.")
        request.target = radiomics.load_preset(params.preset)
        request.texture_label = f"preset {params.preset}"
    elif params.texture_source == TEXTURE_SEGMENT:
        volume_node = params.texture_volume or params.input_volume
        segmentation = params.texture_segmentation or params.segmentation
        if not params.texture_segment_id:
            raise InvalidMaskError("Select the segment whose texture the new tumour should have.")
        if volume_node is params.input_volume:
            request.texture_image = request.image  # no second copy of a large CT
        else:
            request.texture_image = mrml.volume_from_node(volume_node)
            check_ct(request.texture_image)
        request.texture_mask = mrml.segment_to_mask(segmentation, params.texture_segment_id, request.texture_image)
        segment = segmentation.GetSegmentation().GetSegment(params.texture_segment_id)
        request.texture_label = f"segment '{segment.GetName()}' of '{volume_node.GetName()}'"
    else:
        raise RadSynthError(f"Unknown texture source {params.texture_source!r}; choose segment or preset.")


def texture_target(request: Request, progress: ProgressFn, cancel: CancelToken) -> dict[str, float]:
    """The preset's features, or those measured on the texture segment (slow: runs in ``execute``)."""
    if request.target is not None:
        return dict(request.target)
    from radsynth import radiomics

    progress(0.0, "measuring texture")
    target = radiomics.texture_features(request.texture_image, request.texture_mask)
    cancel.check()
    return target


def add_result_nodes(request: Request, result, scene, volume_name: str, segmentation_name: str,
                     segment_name: str, color, table_name: Optional[str] = None) -> dict[str, Any]:
    """New ``volume``, ``segmentation`` and (when named and the result has features) ``table`` nodes; all or none."""
    if scene is None:
        raise RadSynthError("There is no scene to add the result to.")
    volume, mask = result.volume, result.mask
    if not volume.same_grid(request.image) or not mask.same_grid(request.image):
        raise WorkerError("The result does not lie on the input volume's grid; nothing was added.")
    if not volume.is_synthetic:
        volume.mark_synthetic(f"TumorSynth {request.operation}")
    reference = scene.GetNodeByID(request.input_node_id)
    if reference is not None and reference.GetName() != request.input_name:
        reference = None  # the ID was reused by another node after the input was deleted
    created: list = []
    table = None
    try:
        created.append(mrml.volume_to_node(volume, scene, volume_name, reference=reference))
        created.append(mrml.mask_to_segmentation_node(mask, scene, segmentation_name, segment_name, created[0],
                                                      color))
        if table_name and result.features is not None:
            table = mrml.features_to_table_node(result.features, scene, table_name)
            table.SetAttribute("RadSynth.TextureSource", request.texture_label)
            created.append(table)
    except Exception:
        mrml.remove_nodes(scene, created)
        raise
    for node in created:
        node.SetAttribute("RadSynth.SourceVolume", request.input_name)
    return {"volume": created[0], "segmentation": created[1], "table": table}


class BackgroundRun:
    """``execute`` on a worker thread; the GUI polls ``fraction``/``stage``/``running`` from a timer.

    Only plain data crosses the thread boundary, so nothing here needs Qt, and MRML stays on the main thread:
    when ``running`` turns False, the caller passes ``result`` to ``apply`` (or shows ``error``).
    """

    def __init__(self, logic: TumorSynthLogic, request: Request) -> None:
        self.request, self.cancel = request, CancelToken()
        self.fraction, self.stage = 0.0, "starting"
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.discard = False  # set when the scene closed meanwhile: the result has nowhere to go
        self._thread = threading.Thread(target=self._run, args=(logic,), name="TumorSynth", daemon=True)

    def start(self) -> "BackgroundRun":
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: Optional[float] = None) -> bool:
        self._thread.join(timeout)
        return not self.running

    def _progress(self, fraction: float, stage: str) -> None:
        self.fraction, self.stage = fraction, stage

    def _run(self, logic: TumorSynthLogic) -> None:
        try:
            self.result = logic.execute(self.request, self._progress, self.cancel)
        except Exception as exc:  # noqa: BLE001 - reported on the main thread, which shows it to the user
            self.error = exc

