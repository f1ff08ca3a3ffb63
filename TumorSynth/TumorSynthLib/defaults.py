"""The TumorSynth panel's parameters, declared once (Qt-free, read by the widget and by the panel-defaults test).

Every value the engine also takes (guidance, steps, seed, the shape sliders) mirrors the operation's declaration in
``radsynth.pipelines.tumor_ops``: its default, range and help come from there, so the panel synthesizes with the
same settings as the CLI and the engine. The widget turns :data:`PARAMETERS` into its ``parameterNodeWrapper``
class (``RadSynthLib.parameters.wrapper_class``).
"""

from __future__ import annotations

from radsynth.pipelines import tumor_ops
from RadSynthLib.parameters import Param, find, node_param, option_param

REMOVE, SYNTHESIZE = "remove", "synthesize"
TEXTURE_SEGMENT, TEXTURE_PRESET = "segment", "preset"
FROM_POINT, FROM_PAINTED = "point", "painted"
#: the Variants spin box's limit; each variant is a full run
MAX_VARIANTS = 20

_COMMON = {o.name: o for o in tumor_ops.COMMON}
STEPS = _COMMON["steps"]
SEED = _COMMON["seed"]
ETA = _COMMON["eta"]
GUIDANCE = tumor_ops.GUIDANCE
#: the steps spin box's special value "model default": one below the smallest declared count
STEPS_UNSET = int(STEPS.min) - 1
#: Variants must differ in texture too, not only in shape: the bridge sampler is deterministic at eta 0, so several
#: variants sample fully stochastically (the declared maximum)
VARIANT_ETA = ETA.max
#: texture features the sliders set (their limits come from the texture model's card, not from a declaration)
TEXTURE_FEATURES = ("firstorder_Mean", "firstorder_Entropy", "glcm_Contrast")
SHAPE_OPTIONS = tumor_ops.SHAPE_OPTIONS

PARAMETERS: tuple[Param, ...] = (
    # inputs
    node_param("inputVolume", "vtkMRMLScalarVolumeNode", "The CT to modify (never changed)"),
    node_param("segmentation", "vtkMRMLSegmentationNode"),
    Param("segmentID", str, ""),
    Param("operation", str, SYNTHESIZE, choices=(REMOVE, SYNTHESIZE)),
    # texture source
    Param("textureSource", str, TEXTURE_PRESET, choices=(TEXTURE_SEGMENT, TEXTURE_PRESET)),
    Param("preset", str, ""),          # the widget fills in the first preset, as its combo box shows it
    node_param("textureVolume", "vtkMRMLScalarVolumeNode"),
    node_param("textureSegmentation", "vtkMRMLSegmentationNode"),
    Param("textureSegmentID", str, ""),
    # engine options, mirrored from the declarations
    option_param("steps", STEPS, unset=STEPS_UNSET),
    option_param("seed", SEED),
    option_param("guidance", GUIDANCE),
    Param("modelDir", str, ""),
    # place / operations / variants
    node_param("pointNode", "vtkMRMLMarkupsFiducialNode"),
    node_param("paintedSegmentation", "vtkMRMLSegmentationNode"),
    Param("paintedSegmentID", str, ""),
    node_param("organSegmentation", "vtkMRMLSegmentationNode"),
    Param("organSegmentID", str, ""),
    Param("placeFrom", str, FROM_POINT, choices=(FROM_POINT, FROM_PAINTED)),
    Param("paintedShape", str, tumor_ops.SHAPE_MODES[1], choices=tumor_ops.SHAPE_MODES[1:]),
    Param("variants", int, 1, 1, MAX_VARIANTS),
    Param("preview", bool, True),
    *(option_param(o.name, o) for o in SHAPE_OPTIONS),
    Param("textureSlidersSet", bool, False),
    *(Param(f"texture_{f}", float, 0.0) for f in TEXTURE_FEATURES),
)


def param(name: str) -> Param:
    return find(PARAMETERS, name)


def steps_value(steps: int):
    """The engine's steps for a spin-box value: None (the model's benchmarked default) at the special value."""
    return param("steps").engine_value(int(steps)) if steps is not None else None
