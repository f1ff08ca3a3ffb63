"""The texture generator's training samples: (crop, mask, radiomics | None, kind), None meaning a removal sample.

Three kinds of synthesis sample teach the feature → texture mapping:
  * real tumours (the core of the set);
  * lesion-shaped masks on other tissue, with that tissue's own features;
  * procedural tumours: a lesion-shaped mask on lung filled with soft-tissue-like texture of random mean,
    heterogeneity and grain. Inpainting from context alone predicts healthy tissue well, so without samples whose
    inside cannot be guessed from the outside the model learns to ignore its condition (the first demo model did:
    its mean-intensity slider moved the output 0.0002 HU per HU).

Features are measured on the VQ-GAN reconstruction, not the raw crop: the condition then describes a texture the
decoder can produce, so a requested value is reachable and the mapping the model learns is not blurred by detail
the codec drops.
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
from scipy import ndimage

from ..errors import RadSynthError
from ..radiomics import texture_features
from ..region import RegionSpec
from ..volume import Volume
from .data import Case, crop, hemithorax, lesion_mask, lung_region, random_center

#: sample kinds; the sliders' feature Gaussian is fitted on the tumour kinds only (see train/texture.py)
TUMOUR, PROCEDURAL, TISSUE, REMOVAL = "tumour", "procedural", "tissue", "removal"
TUMOUR_KINDS = (TUMOUR, PROCEDURAL)
#: procedural tumour texture ranges: mean HU, standard deviation HU, grain (Gaussian correlation, voxels)
PROC_MEAN_HU = (-150.0, 150.0)
PROC_SD_HU = (5.0, 120.0)
PROC_GRAIN_VOX = (0.7, 3.0)
#: partial-volume edge of a procedural tumour (voxels), so its border looks like a tumour border and not a cut
PROC_EDGE_VOX = 0.7

Roundtrip = Callable[[np.ndarray], np.ndarray]


def features_of(crop_img: np.ndarray, mask: np.ndarray, spec: RegionSpec) -> Optional[dict[str, float]]:
    vol = Volume(spec.denormalize(crop_img).astype(np.float32), (0.0, 0.0, 0.0), spec.spacing,
                 (1, 0, 0, 0, 1, 0, 0, 0, 1))
    try:
        return texture_features(vol, mask)
    except RadSynthError:
        return None


def procedural_tumour(img: np.ndarray, mask: np.ndarray, spec: RegionSpec, rng: np.random.Generator) -> np.ndarray:
    """``img`` with a soft-tissue-like tumour of random mean, heterogeneity and grain inside ``mask``."""
    noise = ndimage.gaussian_filter(rng.normal(size=mask.shape), rng.uniform(*PROC_GRAIN_VOX))
    noise /= noise.std() + 1e-8
    texture = rng.uniform(*PROC_MEAN_HU) + rng.uniform(*PROC_SD_HU) * noise
    weight = ndimage.gaussian_filter(mask.astype(np.float32), PROC_EDGE_VOX)
    hu = spec.denormalize(img) * (1.0 - weight) + texture * weight
    return spec.normalize(np.clip(hu, *spec.window)).astype(np.float32)


def _tumour_shapes(cases: list[Case], size: int) -> list[np.ndarray]:
    shapes = []
    for case in cases:
        if case.tumor.any():
            idx = np.argwhere(case.tumor)
            shapes.append(crop(case.tumor, (idx.min(0) + idx.max(0)) // 2, size, False))
    return shapes


def _healthy_mask(shapes: list[np.ndarray], size: int, spec: RegionSpec, rng: np.random.Generator) -> np.ndarray:
    """A mask to put on healthy tissue: a real tumour's shape (randomly flipped) 30% of the time, as in the paper's
    removal samples, else a procedural lesion up to 60 mm so large tumours can be removed too."""
    if shapes and rng.random() < 0.3:
        mask = shapes[rng.integers(len(shapes))]
        for axis in range(3):
            if rng.random() < 0.5:
                mask = np.flip(mask, axis)
        return np.ascontiguousarray(mask)
    return lesion_mask(size, spec.spacing[0], rng, diameter_mm=(8.0, 60.0))


def build_bank(cases: list[Case], spec: RegionSpec, n: int, rng: np.random.Generator, roundtrip: Roundtrip,
               tumor_fraction: float = 0.15, procedural_fraction: float = 0.35):
    """Draw n (crop, mask, features | None, kind) samples; half the healthy-tissue samples are removal samples."""
    size = spec.size[0]
    shapes = _tumour_shapes(cases, size)

    def center(case: Case, lung: bool) -> np.ndarray:
        def region() -> np.ndarray:
            return (lung_region(case) if lung else case.body) & hemithorax(case, size, "train")
        return random_center(case, rng, region, margin=size // 4, key="lung-train" if lung else "body-train")

    bank = []
    while len(bank) < n:
        case, draw = cases[int(rng.integers(len(cases)))], rng.random()
        if case.tumor.any() and draw < tumor_fraction:
            idx = np.argwhere(case.tumor)
            c = ((idx.min(0) + idx.max(0)) // 2) + rng.integers(-6, 7, 3)
            img, msk, kind = crop(case.image, c, size, -1.0), crop(case.tumor, c, size, False), TUMOUR
        elif draw < tumor_fraction + procedural_fraction:
            c = center(case, lung=True)
            img, msk = crop(case.image, c, size, -1.0), lesion_mask(size, spec.spacing[0], rng, (8.0, 50.0))
            if (crop(case.tumor, c, size, False) & msk).any():
                continue
            img, kind = procedural_tumour(img, msk, spec, rng), PROCEDURAL
        else:
            c = center(case, lung=rng.random() < 0.6)
            img, msk = crop(case.image, c, size, -1.0), _healthy_mask(shapes, size, spec, rng)
            if (crop(case.tumor, c, size, False) & msk).any():
                continue  # a healthy-tissue target must not contain tumour
            kind = REMOVAL if rng.random() < 0.5 else TISSUE
        if rng.random() < 0.5:
            img, msk = img[:, :, ::-1].copy(), msk[:, :, ::-1].copy()
        feats = None if kind == REMOVAL else features_of(roundtrip(img), msk, spec)
        if kind != REMOVAL and feats is None:
            continue
        bank.append((img, msk.astype(np.float32), feats, kind))
    return bank
