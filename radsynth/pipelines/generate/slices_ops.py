"""CTGenerate's slice-wise operation, declared once: ``generate slices`` (ASCII growth from seed slices).

Torch-free: hosts (Slicer, the CLI) read these declarations without loading a network; the run function is named.
"""

from __future__ import annotations

from ..registry import Operation, Option, register

MODULE = "generate"
SCORE_MODEL = "slice-score"
ICNET_MODEL = "icnet"
DIRECTIONS = ("up", "down", "both")
SAMPLERS = ("fast", "pc")
#: a choice, not a bool: the generated CLI flag of a bool that defaults to True could not be switched off
SWITCH = ("on", "off")
#: network evaluations per slice: fast = DPM-Solver++(2M) on 39 Karras levels, pc = 1000 levels × (P + C) + denoise
FAST_STEPS = 39
PC_STEPS = 1000

SLICES = register(Operation(
    "slices", MODULE, "Grow a CT volume slice by slice from a seed slice (or from air), each new slice generated "
    "from its neighbours (ASCII) and calibrated by IC-Net.", "radsynth.pipelines.generate.slices:run",
    (
        Option("seed_slice", "int", None, "Seed slice: its index along the volume's axial (k) axis; unset: an "
               "unconditional volume that takes only its grid from the image", unit="slice", min=0, max=100000,
               reason="The red view's current slice in Slicer; a slice inside the anatomy conditions best."),
        Option("direction", "choice", "up", "Where new slices go: up (towards the head), down, or both "
               "(the slices are split, the odd one up)", choices=DIRECTIONS,
               reason="Up is what the thesis grows; an unconditional volume grows up from air only."),
        Option("slices", "int", 8, "Number of new slices", unit="slices", min=1, max=1024,
               reason="8 slices (40 mm at 5 mm) take ~15 s with the demo model's fast sampler on a 2-core CPU."),
        Option("k", "int", None, "Adjacent slices the model stacks (K): each new slice is conditioned on the K-1 "
               "before it (unset: the model card's)", min=2, max=3,
               reason="A model is trained for one K; the demo model has K=2."),
        Option("icnet", "choice", "on", "Calibrate each new slice's soft-tissue contrast against its neighbour "
               "(IC-Net): on or off", choices=SWITCH,
               reason="Without it, contrast drifts from slice to slice (stripes in coronal views); "
               "pixels outside IC-Net's window are never changed."),
        Option("sampler", "choice", "fast", "Sampler: fast (DPM-Solver++(2M), 39 evaluations per slice) or pc "
               "(the thesis's predictor-corrector, 1999 evaluations per slice at 1000 levels)", choices=SAMPLERS,
               reason="Fast matches PC's conditional statistics on exact Gaussian scores at 1/50 of the cost "
                      "(docs/ctgenerate-slices.md)."),
        Option("steps", "int", None, "Noise levels (unset: 39 for fast, 1000 for pc)", min=2, max=2000,
               reason="39 Karras levels for fast; 1000 geometric levels for pc as in the thesis."),
        Option("snr", "float", 0.16, "Langevin corrector signal-to-noise ratio (pc only)", min=0.01, max=1.0,
               reason="score_sde uses 0.15-0.17 for VE models; the thesis gives none."),
        Option("seed", "int", 0, "Random seed; the same seed and inputs give the same result", min=0,
               max=2 ** 31 - 1),
        Option("preview", "str", None, "Folder where the volume grown so far is written after every slice "
               "(growing.nrrd, marked synthetic), for a live view; unset: none",
               reason="The Slicer panel shows the growing volume from it while the run goes on."),
    ),
    needs_mask=False, model_kinds=(SCORE_MODEL, ICNET_MODEL)))

ORGAN_MODEL = "organ-score"
#: classifier-free guidance with the map: 0 = unguided (map dropped), 1 = conditional, above 1 = stronger
GUIDANCE = 1.0


def _shared(*names: str) -> tuple[Option, ...]:
    return tuple(SLICES.option(n) for n in names)


ORGANS = register(Operation(
    "organs", MODULE, "Generate a CT slice by slice that follows an organ map (ASCII with each slice's map as a "
    "condition); organs not kept are replaced by what surrounds them.", "radsynth.pipelines.generate.organs:run",
    (
        Option("organ_map", "labels", None, "Organ map in the label scheme (0 background, 1 body, 2 left lung, "
               "3 right lung, 4 trachea, 5 nodule); the result takes its grid. Unset: the automatic "
               "body/lung/trachea map of the image",
               reason="A TotalSegmentator or DiffusionInpaint map named in the scheme, or the CT's own automatic map."),
        Option("keep", "str", None, "Organs to keep, comma-separated names (e.g. 'body,left lung,right lung'); "
               "each organ not named is relabelled to the organ around it before generation. Unset: every organ "
               "of the map", reason="Unticking an organ in the panel leaves it out here; unknown names are refused."),
        Option("start", "int", None, "First slice of the map to generate (its k index); unset: the lowest slice "
               "holding body", unit="slice", min=0, max=100000),
        Option("slices", "int", 8, "Number of slices to generate, upwards from the start slice", unit="slices",
               min=1, max=1024, reason="8 slices take ~15 s with the demo model's fast sampler on a 2-core CPU."),
        Option("guidance", "float", GUIDANCE, "How strongly the slices follow the map: 0 ignores it (unguided), 1 "
               "follows it as trained, above 1 classifier-free guidance (twice the network evaluations)",
               min=0.0, max=10.0, reason="The model is trained with map dropout, so 0 and > 1 are well defined; 1 "
                                         "costs one evaluation per step."),
        Option("first_neighbour", "choice", "image", "What the first slice is conditioned on: the image's real "
               "slice below the start (image; used when the map lies on the image's grid) or an air slice (air)",
               choices=("image", "air"),
               reason="The demo model grows CT-like slices from a real neighbour; from air its first slice is poor "
                      "(docs/ctgenerate-slices.md)."),
        *_shared("icnet", "sampler", "steps", "snr", "seed", "preview"),
    ),
    needs_mask=False, model_kinds=(ORGAN_MODEL, ICNET_MODEL)))
