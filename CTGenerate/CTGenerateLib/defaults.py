"""The CTGenerate panel's parameters, declared once (Qt-free): engine values mirror ``generate slices``'s
declarations (``radsynth.pipelines.generate.slices_ops``), so the panel grows with the CLI's settings."""

from __future__ import annotations

from radsynth.pipelines.generate.slices_ops import ORGANS, SLICES
from RadSynthLib.parameters import Param, find, node_param, option_param

#: spin-box special values "unset": one below the declared minimum
SEED_SLICE_UNSET = -1          # unconditional
K_UNSET = 1                    # the model card's K
STEPS_UNSET = 1                # the sampler's default
ORGAN_START_UNSET = -1         # the lowest slice holding an organ

PARAMETERS: tuple[Param, ...] = (
    node_param("inputVolume", "vtkMRMLScalarVolumeNode", "The CT to grow from (never changed)"),
    Param("seedFromRedView", bool, True, help="Seed at the red view's current slice"),
    option_param("seedSlice", SLICES.option("seed_slice"), unset=SEED_SLICE_UNSET),
    option_param("direction", SLICES.option("direction")),
    option_param("slices", SLICES.option("slices")),
    option_param("k", SLICES.option("k"), unset=K_UNSET),
    Param("icnet", bool, SLICES.option("icnet").default == "on", help=SLICES.option("icnet").describe(),
          option=SLICES.option("icnet")),   # a check box for the engine's on/off choice
    option_param("sampler", SLICES.option("sampler")),
    option_param("steps", SLICES.option("steps"), unset=STEPS_UNSET),
    option_param("seed", SLICES.option("seed")),
    Param("modelDir", str, ""),
    # "Choose organs" (generate organs); the organs ticked are read from the list when Generate is pressed
    node_param("segmentation", "vtkMRMLSegmentationNode", "The organ map: segments named in the label scheme"),
    option_param("organStart", ORGANS.option("start"), unset=ORGAN_START_UNSET),
    option_param("organSlices", ORGANS.option("slices")),
    option_param("guidance", ORGANS.option("guidance")),
    option_param("organSeed", ORGANS.option("seed")),
    Param("variants", int, 1, help="Volumes generated with seeds seed, seed+1, ...", minimum=1, maximum=16),
)


def param(name: str) -> Param:
    return find(PARAMETERS, name)
