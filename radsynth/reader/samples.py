"""Inputs for trying and testing reader studies: small CT-like toy volumes, or the real sample chest CTs with
synthetic copies. The synthetic ones are written the way RadSynth writes its outputs (float voxels, the synthetic
mark, provenance, a " - synthetic" name), so a study built from them shows that blinding removes all of that."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..volume import Volume, read_volume, write_volume
from .build import CaseInput
from .questions import REAL, SYNTHETIC


def _toy_ct(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    k, j, i = shape
    zz, yy, xx = np.mgrid[:k, :j, :i]
    body = ((yy - j / 2) / (0.45 * j)) ** 2 + ((xx - i / 2) / (0.45 * i)) ** 2 < 1
    lung = (((yy - j / 2) / (0.3 * j)) ** 2 + ((np.abs(xx - i / 2) - 0.2 * i) / (0.15 * i)) ** 2) < 1
    ct = np.full(shape, -1000.0)
    ct[body] = 40.0
    ct[lung & body] = -850.0
    return ct + rng.normal(0, 20, shape)


def toy_inputs(folder: Path, n_real: int = 3, n_synthetic: int = 3, shape: Sequence[int] = (8, 32, 32),
               seed: int = 0) -> list[CaseInput]:
    """Real-like int16 toy CTs and smoothed float32 copies marked synthetic (each on the same grid)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    inputs = []
    for n in range(max(n_real, n_synthetic)):
        ct = _toy_ct(shape, rng)
        geometry = dict(origin=(-100.0 + n, -120.0, -300.0 - 5 * n), spacing=(0.7, 0.7, 5.0),
                        direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
        if n < n_real:
            path = folder / f"patient{n:02d}.nrrd"
            write_volume(Volume(np.rint(ct).astype(np.int16), **geometry), path)
            inputs.append(CaseInput(path, REAL))
        if n < n_synthetic:
            synthetic = Volume(ndimage.gaussian_filter(ct, 0.8).astype(np.float32), **geometry)
            synthetic.mark_synthetic("radsynth toy generator 1.0")
            path = folder / f"patient{n:02d} - synthetic.nrrd"
            write_volume(synthetic, path)
            inputs.append(CaseInput(path, SYNTHETIC, {"size": "small" if n % 2 else "large"}))
    return inputs


def sample_ct_inputs(folder: Path) -> list[CaseInput]:
    """lung1 and lung2 as real cases, and one synthetic copy of each (slightly smoothed, offset by 3 HU, float32,
    marked synthetic) as synthetic cases."""
    from ..sample_data import sample_path

    folder.mkdir(parents=True, exist_ok=True)
    inputs = []
    for name in ("lung1", "lung2"):
        path = sample_path(name, "image")
        inputs.append(CaseInput(path, REAL))
        volume = read_volume(path)
        edited = volume.with_array(ndimage.uniform_filter(volume.array.astype(np.float32), 2) + 3.0)
        edited.mark_synthetic(f"radsynth test edit of {name}")
        out = folder / f"{name} - synthetic.nrrd"
        write_volume(edited, out)
        inputs.append(CaseInput(out, SYNTHETIC, {"source": name}))
    return inputs
