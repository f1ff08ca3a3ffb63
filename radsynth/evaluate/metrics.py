"""Image-quality metrics with an explicit protocol (the paper leaves ROI and data range unspecified).

PSNR: over the voxels of the evaluated mask only, data range = the model's intensity window width (HU).
SSIM: MONAI's 2D SSIM per axial slice of the mask's bounding box (+ context), averaged; 2D because clinical CT slices
are often 5 mm thick, too few slices for a 3D window.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import SSIMMetric
from scipy import ndimage


def psnr_in_mask(reference: np.ndarray, test: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    diff = reference[mask > 0].astype(np.float64) - test[mask > 0].astype(np.float64)
    mse = float(np.mean(diff ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range ** 2 / mse)


def ssim_in_box(reference: np.ndarray, test: np.ndarray, mask: np.ndarray, data_range: float,
                context_voxels: int = 4, win_size: int = 7) -> float:
    sl = ndimage.find_objects((mask > 0).astype(np.uint8))[0]
    box = tuple(slice(s.start, s.stop) if i == 0 else
                slice(max(s.start - context_voxels, 0), s.stop + context_voxels) for i, s in enumerate(sl))
    ref = torch.from_numpy(reference[box].astype(np.float32))[:, None]  # slices as a batch of 2D images
    tst = torch.from_numpy(test[box].astype(np.float32))[:, None]
    if min(ref.shape[-2:]) < win_size:
        win_size = max(3, min(ref.shape[-2:]) // 2 * 2 - 1)
    metric = SSIMMetric(spatial_dims=2, data_range=data_range, win_size=win_size)
    return float(metric(tst, ref).mean())
