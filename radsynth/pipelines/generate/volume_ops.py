"""CTGenerate's whole-volume operation, declared once: ``generate volume`` (latent diffusion, MAISI family).

Torch-free: hosts (Slicer, the CLI) read these declarations without loading a network; the run function is named.
It takes no input image: the output grid comes from the model (or the size and spacing asked for), and an optional
organ segmentation places it (the output is centred on the segmentation's anatomy).
"""

from __future__ import annotations

from ..registry import Operation, Option, register

MODULE = "generate"
#: the kind whose bundled default (the demo) runs when no model is chosen (radsynth.train.volume trains it); the
#: MAISI family (converted NV-Generate-CT checkpoints) is named with ``model``
MODEL_KIND = "volume-ldm"
MODEL_KINDS = ("volume-ldm", "maisi-rflow-ct", "maisi-ddpm-ct")
SAMPLERS = ("rflow", "ddpm", "ddim")

VOLUME = register(Operation(
    "volume", MODULE, "Generate a whole CT volume with latent diffusion (the bundled demo model or a registered "
    "MAISI-family model), unguided or following an organ segmentation.",
    "radsynth.pipelines.generate.whole_volume:run",
    (
        Option("model", "str", None, "Model: an installed model's name (radsynth models list) or a model folder, "
               "of kind volume-ldm or maisi-rflow-ct / maisi-ddpm-ct (unset: the volume-ldm folder given with "
               "--models, else the bundled demo-volume-ldm)",
               reason="The demo runs anywhere in seconds; MAISI checkpoints need converting and a GPU."),
        Option("size", "str", None, "Output size in voxels as X,Y,Z (unset: the model's default)", unit="voxels",
               reason="A model supports the sizes its card lists (the demo: 64,64,48)."),
        Option("spacing", "str", None, "Voxel spacing in mm as X,Y,Z (unset: the model's default)", unit="mm",
               reason="Size × spacing is the field of view; seed 003's zoomed outputs came from leaving it implicit."),
        Option("body_region", "str", None, "Body region for models that take one: top[,bottom] of head, chest, "
               "abdomen, pelvis (unset: none)", reason="MAISI DDPM models condition on it; the others ignore it."),
        Option("steps", "int", None, "Sampler steps (unset: the model card's default)", min=1, max=1000,
               reason="The demo card's default is 20 RFlow steps; MAISI rflow-ct publishes 30."),
        Option("sampler", "choice", None, "Sampler: rflow for rectified-flow models, ddpm or ddim for DDPM models "
               "(unset: the model card's)", choices=SAMPLERS),
        Option("seed", "int", 0, "Random seed; the same seed and inputs give the same volume", min=0,
               max=2 ** 31 - 1),
        Option("segmentation", "volume", None, "Organ segmentation to follow (integer label volume, any grid; "
               "names of its labels from --segment-names, else radsynth's map labels 1 body, 2 left lung, "
               "3 right lung, 4 trachea)", reason="TotalSegmentator or the CTGenerate/DiffusionInpaint auto map."),
        Option("segment_names", "mapping", None, "Names of the segmentation's labels: {\"value\": \"name\"} "
               "(TotalSegmentator names such as lung_upper_lobe_left, or body, left lung, ...)"),
    ),
    needs_mask=False, needs_image=False, model_kinds=(MODEL_KIND,)))
