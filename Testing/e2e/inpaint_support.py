"""What the DiffusionInpaint CLI and MRML tests share: a small crop of the real lung1 CT around its tumour, and tiny
untrained slice models saved as model folders (the demo models are trained elsewhere; these test the wiring, not
the fill's quality). A freshly initialised MONAI UNet predicts ε = 0, which still gives a seed-dependent fill."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from radsynth import models
from radsynth.nets import inpaint_unet, sdm
from radsynth.pipelines.inpaint import labels as L
from radsynth.sample_data import sample_path
from radsynth.volume import Volume, read_volume

TINY = {"channels": [8, 16, 16], "attention_levels": [False, False, False], "num_res_blocks": 1,
        "num_head_channels": 8, "norm_num_groups": 8, "neighbour": True}
REGION = {"size": [32, 32], "spacing": [1.25, 1.25], "window": [-1000.0, 400.0]}
SCHEDULE = {"num_train_timesteps": 100}
SAMPLING = {"steps": 2, "jump_length": 1, "resample": 1}
#: lung1's tumour lies on slices 32–34, rows 347–372, columns 206–229; the crop keeps 5 slices and ~20 mm around it
CROP = (slice(28, 40), slice(300, 420), slice(160, 280))


def crop(volume: Volume, box=CROP) -> Volume:
    """``volume[box]`` as a Volume in the same place (origin moved to the box's first voxel)."""
    start = np.array([[s.indices(n)[0] for s, n in zip(box, volume.shape)]])
    origin = volume.index_to_physical(start)[0]
    return Volume(np.ascontiguousarray(volume.array[box]), tuple(origin), volume.spacing, volume.direction)


def lung1_crop() -> tuple[Volume, Volume]:
    """(CT, tumour label) of lung1, cropped to ``CROP``."""
    return crop(read_volume(sample_path("lung1", "image"))), crop(read_volume(sample_path("lung1", "label")))


def _card(name: str, kind: str, arch: dict, **more) -> dict:
    return {"name": name, "kind": kind, "version": "0", "demo": True, "licence": "Apache-2.0",
            "architecture": arch, "region": REGION, "schedule": SCHEDULE, "sampling": SAMPLING, **more}


def tiny_models(root: Path) -> dict[str, Path]:
    """Folders of a tiny palette (mask-conditioned), unconditional (RePaint) and SDM model under ``root``."""
    torch.manual_seed(0)
    root = Path(root)
    out = {}
    for name, mask_input in (("palette", True), ("slice", False)):
        arch = {**TINY, "mask_input": mask_input}
        out[name] = root / f"tiny-inpaint-{name}"
        models.save_model(out[name], inpaint_unet.InpaintUNet(arch), _card(out[name].name, inpaint_unet.KIND, arch))
    arch = {**TINY, "spade_intermediate_channels": 8}
    out["sdm"] = root / "tiny-inpaint-sdm"
    models.save_model(out["sdm"], sdm.SDMUNet(arch, L.BASIC),
                      _card(out["sdm"].name, sdm.KIND, arch, classes=list(L.BASIC)))
    return out
