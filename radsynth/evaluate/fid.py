"""FID-Ax / FID-Cor / FID-Sag (2.5D Fréchet Inception distance), only with Inception-v3 weights the user supplies.

radsynth never downloads weights. The user gives a file of torchvision's ``inception_v3`` layout (the ImageNet
weights torchvision publishes, saved as a state dict): ``.safetensors`` (read with safetensors) or ``.pt``/``.pth``
(``torch.load(weights_only=True)``: tensors only, never pickled code). The network is
:class:`radsynth.evaluate.inception.InceptionV3Features` (torchvision's modules and keys, without torchvision) with
the classifier removed: 2048 pool features per image. Without the file :func:`fid_unavailable` says what is missing
and the rest of a report is still written.

Protocol (seed 000 §6.2.3, Table 7: axial, coronal and sagittal middle slices of each volume): each volume gives its
axial, coronal and sagittal slices through the body (every ``stride``-th slice within the central half of the other
two axes, so one volume gives several images), HU windowed onto [0, 1] (whole range −1024…3071 HU by default, as the
thesis's "whole range"), grey → three channels, resized to 299² (bilinear), ImageNet-normalised. FID between the
real and generated images of each plane; it is biased upwards with few images (Chong & Forsyth 2020), so the image
count is reported next to it and only runs of the same count compare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import ModelError, RadSynthError
from .distribution import frechet_from_moments

PLANES = ("axial", "coronal", "sagittal")
WHOLE_RANGE = (-1024.0, 3071.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE = 299
MISSING_WEIGHTS = ("FID not computed: it needs Inception-v3 weights, which radsynth never downloads. Pass "
                   "--fid-weights FILE (torchvision's inception_v3 state dict as .safetensors, or a .pt/.pth "
                   "tensor-only state dict). The other metrics do not need it.")


def fid_unavailable(weights: Optional[Path]) -> Optional[str]:
    """Why FID cannot run (None when it can): no weights file given, or not a file."""
    if weights is None:
        return MISSING_WEIGHTS
    if not Path(weights).is_file():
        return f"FID not computed: the Inception weights file {weights} does not exist."
    return None


def read_state(path: Path) -> dict:
    """A tensor-only state dict from ``.safetensors`` or ``.pt``/``.pth`` (weights_only), or a ModelError."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:   # corrupt file, pickled code refused by weights_only, wrong format
        raise ModelError(f"The Inception weights {path} cannot be read as a tensor-only state dict ({exc}).") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        raise ModelError(f"The Inception weights {path} hold no state dict.")
    return state


def load_inception(path: Path, device: str = "cpu"):
    """Inception-v3 pool-feature network with the weights of ``path`` (torchvision's inception_v3 state dict)."""
    from .inception import InceptionV3Features, load_state

    return load_state(InceptionV3Features(), read_state(path), str(path)).to(device)


def plane_images(volume_hu: np.ndarray, body: np.ndarray, plane: str, stride: int = 4) -> np.ndarray:
    """(n, H, W) slices of a (k, j, i) volume in ``plane``: axial slices that hold body, coronal/sagittal ones
    every ``stride``-th within the central half of the body's extent."""
    axis = PLANES.index(plane)
    other = tuple(a for a in range(3) if a != axis)
    filled = np.flatnonzero(body.any(axis=other))
    if filled.size == 0:
        raise RadSynthError("FID: the volume has no body voxels to take slices from.")
    if axis == 0:
        picks = filled
    else:
        lo, hi = filled[0], filled[-1]
        quarter = (hi - lo) // 4
        picks = np.arange(lo + quarter, hi - quarter + 1, max(int(stride), 1))
    return np.stack([np.take(volume_hu, int(p), axis=axis) for p in picks])


def inception_features(net, images: np.ndarray, window: Sequence[float] = WHOLE_RANGE, batch: int = 8,
                       size: int = SIZE) -> np.ndarray:
    """(n, 2048) pool features of (n, H, W) HU images windowed onto [0, 1], resized to 299² whatever their aspect
    (a coronal slice of a 5 mm CT is stretched along the body axis, for real and generated images alike)."""
    import torch
    import torch.nn.functional as F

    lo, hi = (float(v) for v in window)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    device = next(net.parameters()).device
    out = []
    with torch.no_grad():
        for s in range(0, len(images), batch):
            x = torch.from_numpy(np.clip((np.asarray(images[s:s + batch], np.float32) - lo) / (hi - lo), 0, 1))
            x = F.interpolate(x[:, None], size=(size, size), mode="bilinear", align_corners=False)
            x = (x.expand(-1, 3, -1, -1) - mean) / std
            out.append(net(x.to(device)).cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def fid(real: np.ndarray, generated: np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance of raw Inception features (no z-scoring; the FID definition), a tiny ridge for few images."""
    eye = np.eye(real.shape[1]) * ridge
    return frechet_from_moments(real.mean(0), np.cov(real, rowvar=False) + eye,
                                generated.mean(0), np.cov(generated, rowvar=False) + eye)


def fid_planes(net, real: Sequence[tuple[np.ndarray, np.ndarray]], generated: Sequence[tuple[np.ndarray, np.ndarray]],
               window: Sequence[float] = WHOLE_RANGE, stride: int = 4, planes: Sequence[str] = PLANES,
               size: int = SIZE) -> dict[str, dict]:
    """{plane: {fid, images_real, images_generated}} from (volume HU, body mask) pairs, for each of ``planes``
    (``size``: the network's input side; 299 as Inception was trained, smaller only for tests)."""
    out = {}
    for plane in planes:
        feats = []
        for group in (real, generated):
            imgs = [plane_images(v, b, plane, stride) for v, b in group]
            feats.append(np.concatenate([inception_features(net, i, window, size=size) for i in imgs]))
        if min(len(f) for f in feats) < 2:
            out[plane] = {"fid": None, "note": "fewer than two images in a set"}
            continue
        out[plane] = {"fid": fid(*feats), "images_real": int(len(feats[0])), "images_generated": int(len(feats[1]))}
    return out
