"""TumorSynth's operations, declared once: options, defaults with their reasons, model kinds.

Torch-free and below the pipelines: the pipelines read their defaults from here, and the run functions
(``tumor_run``) are named, not imported, so hosts read these declarations without loading a network.
"""

from __future__ import annotations

from .registry import Operation, Option, common_options, register

TEXTURE_MODEL = "bbdm-texture"
SHAPE_MODEL = "shape-gan"
MODULE = "tumor"
RUN = "radsynth.pipelines.tumor_run:"

GUIDANCE = Option(
    "guidance", "float", 3.0, "Texture strength (classifier-free guidance): 0 = no tumour (healthy-tissue output), "
    "1 = conditional, above 1 stronger", min=0.0, max=10.0,
    reason="The null branch renders healthy tissue; at 1 the demo model still leans to it (mean requests of "
           "-150/0/+150 HU on a 20 mm lung site gave -391/-380/-473 HU), at 3 it follows them (-180/-104/-57 HU). "
           "Guidance doubles the network evaluations per step.")
REMOVE_MARGIN = Option(
    "margin_mm", "float", 3.0, "Rim around the mask regenerated with it", unit="mm", min=0.0, max=10.0,
    reason="The tumour's partial-volume rim must go too; 3 mm covers it on 0.7-1.5 mm grids.")
SYNTH_MARGIN = Option(
    "margin_mm", "float", 1.5, "Rim around the mask generated with it", unit="mm", min=0.0, max=10.0,
    reason="One model voxel: the codec's soft lesion edge then straddles the mask as a real tumour's edge straddles "
           "its segmentation; filling the mask exactly put the whole-mask mean ~150 HU too low (BENCHMARKS.md).")
#: the mask-conditioned slice model of DiffusionInpaint (``radsynth.pipelines.inpaint.FILL_MODEL``), named here so
#: these declarations stay free of the inpaint package
FILL_MODEL = "diffusion-inpaint"
REMOVALS = ("inpaint", "bridge")
REMOVAL = Option(
    "removal", "choice", "inpaint", "How the old tumour is replaced by healthy tissue: inpaint (DiffusionInpaint's "
    "healthy fill, slice by slice) or bridge (the texture model's own removal)", choices=REMOVALS,
    reason="On lung2's 24.6 mL tumour against the chest wall (ring 3-12 mm around: -390 HU) the inpaint fill leaves "
           "-847 HU inside, the bridge -27 HU: the bridge refills it with soft tissue (docs/adr/0012).")
TARGET = Option("target", "mapping", None, "Target texture features (pyradiomics names → values)")
OVERRIDES = Option("overrides", "mapping", None, "Single texture features to set; correlated ones follow")
#: the shape sliders; the volume slider stops where the extent still fits the demo texture model's 96 mm box
SHAPE_OPTIONS = (
    Option("volume_ml", "float", 4.0, "Tumour volume", unit="mL", min=0.1, max=100.0),
    Option("shape_Sphericity", "float", 0.8, "Sphericity (1 = a sphere)", min=0.3, max=1.0),
    Option("shape_Elongation", "float", 0.75, "Elongation (1 = not elongated)", min=0.2, max=1.0),
    Option("shape_Flatness", "float", 0.6, "Flatness (1 = not flat)", min=0.1, max=1.0),
)
SHAPE_MODES = ("generate", "painted", "inside", "around")
COMMON = common_options(eta_reason="Removal PSNR at 20 steps: eta 1 23.70 dB, 0.5 22.09 dB, 0 20.73 dB.")


TEXTURE = (TARGET, OVERRIDES, GUIDANCE)
TUMOUR_MASK = "The existing tumour (label volume, any grid)."

REMOVE = register(Operation(
    "remove", MODULE, "Replace the tumour under the mask with plausible healthy tissue.", RUN + "remove",
    (REMOVAL, REMOVE_MARGIN, *COMMON), mask_help="Tumour mask (label volume, any grid).",
    model_kinds=(TEXTURE_MODEL, FILL_MODEL)))
SYNTHESIZE = register(Operation(
    "synthesize", MODULE, "Grow a tumour inside the mask whose texture matches a tumour, a feature file or a "
    "preset.", RUN + "synthesize", (*TEXTURE, SYNTH_MARGIN, *COMMON),
    mask_help="Where to grow the tumour (label volume, any grid).", model_kinds=(TEXTURE_MODEL,)))
RETEXTURE = register(Operation(
    "retexture", MODULE, "Keep a tumour's shape and give it a new texture.", RUN + "retexture", (*TEXTURE, *COMMON),
    mask_help=TUMOUR_MASK, model_kinds=(TEXTURE_MODEL,)))
PLACE = register(Operation(
    "place", MODULE, "Place a new tumour at a point (generated shape) or in a painted region.", RUN + "place",
    (*TEXTURE, Option("point_lps", "point", None, "Tumour centre (LPS)", unit="mm"),
     Option("painted", "volume", None, "A painted region (label volume)"),
     Option("shape_mode", "choice", "generate", "How the painted region is used", choices=SHAPE_MODES),
     Option("shape_features", "mapping", None, "Shape sliders: " + ", ".join(o.name for o in SHAPE_OPTIONS)),
     Option("organ", "volume", None, "Keep the tumour inside this label volume"), *COMMON),
    needs_mask=False, model_kinds=(TEXTURE_MODEL, SHAPE_MODEL)))
MOVE = register(Operation(
    "move", MODULE, "Move a tumour: remove it, then synthesize the same shape and texture at the new place.",
    RUN + "move", (Option("shift_lps", "vector", None, "Shift (LPS)", unit="mm"),
                   Option("others", "volumes", None, "Other tumours not to overlap"), REMOVAL, *COMMON),
    mask_help=TUMOUR_MASK, model_kinds=(TEXTURE_MODEL, FILL_MODEL)))
RESIZE = register(Operation(
    "resize", MODULE, "Resize a tumour about its centre, keeping its texture.", RUN + "resize",
    (Option("volume_ml", "float", None, "New volume", unit="mL", min=0.01, max=1000.0),
     Option("scale", "float", None, "Linear scale factor", min=0.1, max=5.0), REMOVAL, *COMMON),
    mask_help=TUMOUR_MASK, model_kinds=(TEXTURE_MODEL, FILL_MODEL)))
