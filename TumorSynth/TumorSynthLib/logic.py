"""TumorSynth logic: remove or synthesize a tumour on MRML nodes; no Qt, no ``slicer.mrmlScene``.

The three phases of a RadSynth job (``RadSynthLib.jobs``): :meth:`TumorSynthLogic.prepare` (main thread) reads the
nodes and refuses bad input; :meth:`TumorSynthLogic.execute` (any thread) measures the texture target and runs the
engine through the runner (in process or in the background worker); :meth:`TumorSynthLogic.apply` (main thread)
adds the results as new nodes. What is TumorSynth's own lives here: its parameters, its request, the texture
source, and the names and terminology of its outputs; the rest is RadSynthLib's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from radsynth import mrml
from radsynth.errors import InvalidMaskError, RadSynthError
from radsynth.progress import CancelToken, ProgressFn, no_progress
from radsynth.volume import Volume, check_ct, synthetic_name
from RadSynthLib import inputs, results
from RadSynthLib.jobs import EngineRequest
from RadSynthLib.workers import EngineRunner

from .defaults import GUIDANCE, REMOVE, SEED, SYNTHESIZE, TEXTURE_PRESET, TEXTURE_SEGMENT

MODULE = "TumorSynth"
DEFAULT_GUIDANCE = GUIDANCE.default
OPERATIONS = (REMOVE, SYNTHESIZE)
TEXTURE_SOURCES = (TEXTURE_SEGMENT, TEXTURE_PRESET)

TUMOR_COLOR = (0.9, 0.3, 0.2)
REMOVED_COLOR = (0.3, 0.6, 0.9)
TUMOR_SEGMENT = results.SegmentSpec("synthetic tumor", results.NEOPLASM, TUMOR_COLOR)
REMOVED_SEGMENT = results.SegmentSpec("removed region", results.TISSUE, REMOVED_COLOR)


@dataclasses.dataclass
class TumorSynthParameters:
    """What the user chose in the panel; node fields hold MRML nodes. Defaults are the engine's declarations'."""
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
    seed: int = SEED.default
    guidance: float = DEFAULT_GUIDANCE
    model_dir: Optional[str] = None      # None: the bundled models


@dataclasses.dataclass
class Request(EngineRequest):
    """Everything ``execute`` needs, as plain data; fields named like an option are offered to the engine."""
    target: Optional[dict[str, float]] = None   # preset values now; measured from a segment in ``execute``
    texture_image: Optional[Volume] = None
    texture_mask: Optional[Volume] = None
    texture_label: str = ""
    steps: Optional[int] = None
    seed: int = SEED.default
    guidance: float = DEFAULT_GUIDANCE


#: runner(request, progress, cancel) -> radsynth.result.Result (RadSynthLib.workers.EngineRunner by default)
Runner = Callable[[Request, ProgressFn, CancelToken], Any]


def engine_settings(operation: str, params: TumorSynthParameters, **more: Any) -> dict[str, Any]:
    """The panel's engine settings, checked against the operation's declaration (types and ranges) now, on the
    main thread, before anything slow starts."""
    values = {"steps": params.steps or None, "seed": params.seed, "guidance": params.guidance, **more}
    checked = inputs.check_options(operation, values)
    return {k: checked.get(k, v) for k, v in values.items()}   # what the operation does not take stays as given


class TumorSynthLogic:
    """Remove or synthesize tumours on MRML nodes; ``runner`` decides where the engine runs."""

    def __init__(self, runner: Optional[Runner] = None) -> None:
        self.runner = runner or EngineRunner()

    # -- phase 1: main thread -----------------------------------------------------------------------------------
    def prepare(self, params: TumorSynthParameters) -> Request:
        if params.operation not in OPERATIONS:
            raise RadSynthError(f"Unknown operation {params.operation!r}; choose remove or synthesize.")
        settings = engine_settings(params.operation, params)
        image = inputs.read_volume(params.input_volume)
        node = params.input_volume
        mask = mrml.segment_to_mask(params.segmentation, params.segment_id, image)
        request = Request(operation=params.operation, image=image, mask=mask, input_name=node.GetName(),
                          input_node_id=node.GetID(), model_dir=params.model_dir or None,
                          steps=settings["steps"], seed=settings["seed"], guidance=settings["guidance"])
        if params.operation == SYNTHESIZE:
            prepare_texture(params, request)
        return request

    # -- phase 2: any thread, no MRML ---------------------------------------------------------------------------
    def execute(self, request: Request, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None):
        progress = progress or no_progress
        cancel = cancel or CancelToken()
        cancel.check()
        if request.operation == SYNTHESIZE:
            request = dataclasses.replace(request, target=texture_target(request, progress, cancel))
        result = (runner or self.runner)(request, progress, cancel)
        # a cancel that arrives as the engine finishes still means "change nothing"
        cancel.check()
        return result

    # -- phase 3: main thread -----------------------------------------------------------------------------------
    def apply(self, request: Request, result, scene) -> dict[str, Any]:
        """Add the result as new nodes: ``volume``, ``segmentation`` and (synthesis only) ``table``."""
        return results.add_result(scene, request, result, output(request))

    # -- all three, for scripts and tests -----------------------------------------------------------------------
    def run(self, params: TumorSynthParameters, progress: Optional[ProgressFn] = None,
            cancel: Optional[CancelToken] = None, runner: Optional[Runner] = None) -> dict[str, Any]:
        request = self.prepare(params)
        result = self.execute(request, progress, cancel, runner)
        return self.apply(request, result, params.input_volume.GetScene())


def output(request: Request) -> results.Output:
    name = request.input_name
    if request.operation == REMOVE:
        return results.Output(synthetic_name(name), f"{MODULE} {request.operation}", f"{name} - removed region",
                              REMOVED_SEGMENT)
    return results.Output(synthetic_name(name), f"{MODULE} {request.operation}", f"{name} - synthetic tumor",
                          TUMOR_SEGMENT, f"{name} - tumor features",
                          table_attributes={"RadSynth.TextureSource": request.texture_label})


# -- the texture source (also the sliders' start values) -----------------------------------------------------------
@dataclasses.dataclass
class TextureChoice:
    """Where the texture comes from: a preset, or a segment of a CT (read from the scene on the main thread)."""
    label: str
    preset: Optional[str] = None
    image: Optional[Volume] = None
    mask: Optional[Volume] = None

    def features(self) -> dict[str, float]:
        """The target features (``radsynth.radiomics.texture_source``: the CLI's chooser too); measuring a segment
        takes ~0.5 s."""
        from radsynth.radiomics import texture_source

        if self.preset is not None:
            return texture_source(preset=self.preset)
        return texture_source(image=self.image, mask=self.mask)


def texture_choice(params: TumorSynthParameters, image: Optional[Volume] = None) -> TextureChoice:
    """Read the texture source from the parameters; ``image``: the input CT already read, to spare a copy."""
    if params.texture_source == TEXTURE_PRESET:
        if not params.preset:
            raise RadSynthError("Choose a texture preset, or take the texture from a segment.")
        return TextureChoice(f"preset {params.preset}", preset=params.preset)
    if params.texture_source != TEXTURE_SEGMENT:
        raise RadSynthError(f"Unknown texture source {params.texture_source!r}; choose segment or preset.")
    volume_node = params.texture_volume or params.input_volume
    segmentation = params.texture_segmentation or params.segmentation
    if volume_node is None or segmentation is None or not params.texture_segment_id:
        raise InvalidMaskError("Select the segment whose texture the new tumour should have.")
    if volume_node is params.input_volume and image is not None:
        texture_image = image   # no second copy of a large CT
    else:
        texture_image = mrml.volume_from_node(volume_node)
        check_ct(texture_image)
    mask = mrml.segment_to_mask(segmentation, params.texture_segment_id, texture_image)
    segment = segmentation.GetSegmentation().GetSegment(params.texture_segment_id)
    return TextureChoice(f"segment '{segment.GetName()}' of '{volume_node.GetName()}'", image=texture_image,
                         mask=mask)


def prepare_texture(params: TumorSynthParameters, request: Request) -> None:
    """Fill the request's texture source: preset values now, or the segment to measure in ``execute``."""
    choice = texture_choice(params, request.image)
    request.texture_label = choice.label
    if choice.preset is not None:
        request.target = choice.features()
    else:
        request.texture_image, request.texture_mask = choice.image, choice.mask


def texture_target(request: Request, progress: ProgressFn, cancel: CancelToken) -> dict[str, float]:
    """The preset's features, or those measured on the texture segment (slow: runs in ``execute``)."""
    if request.target is not None:
        return dict(request.target)
    progress(0.0, "measuring texture")
    target = TextureChoice(request.texture_label, image=request.texture_image, mask=request.texture_mask).features()
    cancel.check()
    return target
