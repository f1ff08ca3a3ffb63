"""DiffusionInpaint's engine: fill a drawn region with diffusion (healthy tissue or new texture), render a semantic
label map to CT (SDM), and build that map from the CT itself.

* :mod:`.labels`   the label scheme (background, body, left/right lung, trachea, nodule; benign/malignant);
* :mod:`.auto_map` body/lung/trachea map from thresholds and morphology;
* :mod:`.slices`   slice-wise region fill with paste-back (Palette-style, RePaint or SDM fillers).

This package's ``__init__`` declares the operations (torch-free, like ``tumor_ops``); the run functions are named,
not imported. Hosts load these declarations by importing ``radsynth.pipelines.inpaint`` (registry BUILTIN or
``RADSYNTH_PLUGINS``).
"""

from __future__ import annotations

from ..registry import Operation, Option, common_options, register

MODULE = "inpaint"
#: one kind for both slice models: with mask input (Palette-style, DDIM) or without (unconditional, RePaint)
FILL_MODEL = "diffusion-inpaint"
SDM_MODEL = "sdm"
MODES = ("healthy", "regenerate")

MARGIN = Option("margin_mm", "float", 2.0, "Rim around the region regenerated with it", unit="mm", min=0.0, max=10.0,
                reason="A drawn segment's edge sits on the partial-volume rim; 2 mm (about three 0.7 mm pixels) "
                       "regenerates it.")
FEATHER = Option("feather_mm", "float", 3.0, "Band beyond the rim over which the fill fades into the CT", unit="mm",
                 min=0.0, max=10.0, reason="The same blend as TumorSynth's; no visible seam on the sample CTs.")
DIRECTION = Option("direction", "choice", "auto", "Order in which axial slices are filled (each from the one before); "
                   "auto starts from the end whose real neighbouring slice looks most like the tissue around the region",
                   choices=("auto", "up", "down"),
                   reason="The fill carries the first real slice through the region: filled upwards, lung2's tumour on "
                          "the diaphragm came back as soft tissue (docs/diffusion-inpaint.md).")
JUMP = Option("jump_length", "int", None, "RePaint: levels jumped back for resampling (unset: the card's, else 5)",
              min=0, max=100)
RESAMPLE = Option("resample", "int", None, "RePaint: passes through each checkpoint (unset: the card's, else 2)",
                  min=1, max=20, reason="2 passes at 25 levels is 45 network evaluations, inside the 50 budget; on "
                  "an exact denoiser the fill's error fell from 0.084 to 0.046 (docs/diffusion-inpaint.md).")
COMMON = common_options(steps_default=None)
RUN = "radsynth.pipelines.inpaint.slices:"

FILL = register(Operation(
    "fill", MODULE, "Fill a region with diffusion: healthy tissue, or new texture for the same anatomy.",
    RUN + "run_fill",
    (Option("mode", "choice", "healthy", "Healthy tissue (remove what is there) or regenerate (new texture, same "
            "anatomy)", choices=MODES),
     Option("strength", "float", 0.5, "Regenerate: how much is regenerated (1 = everything, like healthy)",
            min=0.05, max=1.0),
     MARGIN, FEATHER, DIRECTION, JUMP, RESAMPLE, *COMMON),
    mask_help="The region to fill (label volume, any grid).", model_kinds=(FILL_MODEL,)))

RENDER_MAP = register(Operation(
    "render-map", MODULE, "Render CT for a semantic label map inside a region (SDM), keeping the CT around it.",
    "radsynth.pipelines.inpaint.render:run_render_map",
    (Option("label_map", "labels", None, "The semantic map (label scheme values, any grid)"),
     Option("region", "volume", None, "The region to render (unset: the map's nodules); e.g. where a nodule was "
            "erased, or the part of the map that was edited"),
     Option("guidance", "float", 1.5, "Map adherence (classifier-free guidance): 1 = conditional, above 1 stronger",
            min=0.0, max=10.0, reason="Seed 001's SDM code samples with s = 1.5; guidance doubles the network "
                                      "evaluations per step."),
     MARGIN, FEATHER, DIRECTION, JUMP, RESAMPLE, *COMMON),
    needs_mask=False, mask_help="The region to render (unset: the map's nodules).", model_kinds=(SDM_MODEL,)))

AUTO_MAP = register(Operation(
    "auto-map", MODULE, "Build the body / lung / trachea map from the CT (no network); nodules on top.",
    "radsynth.pipelines.inpaint.auto_map:run_auto_map",
    (Option("nodules", "volume", None, "Nodules to draw on the map (label volume)"),
     Option("nodule_label", "choice", "nodule", "What the nodules are", choices=("nodule", "benign nodule",
                                                                                 "malignant nodule"))),
    needs_mask=False))
