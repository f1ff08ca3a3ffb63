"""The DiffusionInpaint panel's parameters, declared once (Qt-free): engine values mirror the ``fill`` and
``render-map`` declarations (``radsynth.pipelines.inpaint``), so the panel fills with the CLI's settings."""

from __future__ import annotations

from radsynth.pipelines.inpaint import AUTO_MAP, FILL, RENDER_MAP
from RadSynthLib.parameters import Param, find, node_param, option_param

#: the Variants spin box's limit; each variant is a full run
MAX_VARIANTS = 20
#: spin-box special value "unset" (the model card's steps): one below the declared minimum
STEPS_UNSET = int(FILL.option("steps").min) - 1

PARAMETERS: tuple[Param, ...] = (
    node_param("inputVolume", "vtkMRMLScalarVolumeNode", "The CT to fill or render into (never changed)"),
    # Fill region
    node_param("segmentation", "vtkMRMLSegmentationNode"),
    Param("segmentID", str, ""),
    option_param("mode", FILL.option("mode")),
    option_param("strength", FILL.option("strength")),
    option_param("steps", FILL.option("steps"), unset=STEPS_UNSET),
    option_param("seed", FILL.option("seed")),
    Param("variants", int, 1, 1, MAX_VARIANTS, help="Results made at once, with seeds seed, seed + 1, …"),
    option_param("marginMm", FILL.option("margin_mm")),
    option_param("featherMm", FILL.option("feather_mm")),
    Param("modelDir", str, ""),
    # Semantic map -> CT
    node_param("noduleSegmentation", "vtkMRMLSegmentationNode"),
    Param("noduleSegmentID", str, ""),
    option_param("noduleLabel", AUTO_MAP.option("nodule_label")),
    node_param("mapSegmentation", "vtkMRMLSegmentationNode"),
    option_param("guidance", RENDER_MAP.option("guidance")),
    option_param("renderSteps", RENDER_MAP.option("steps"), unset=STEPS_UNSET),
    option_param("renderSeed", RENDER_MAP.option("seed")),
    Param("sdmModelDir", str, ""),
)


def param(name: str) -> Param:
    return find(PARAMETERS, name)
