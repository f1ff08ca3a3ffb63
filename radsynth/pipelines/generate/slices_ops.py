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
    ),
    needs_mask=False, model_kinds=(SCORE_MODEL, ICNET_MODEL)))
