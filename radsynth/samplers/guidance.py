"""Classifier-free guidance as a wrapper around a conditional model, the way k-diffusion wraps denoisers.

Any sampler takes the wrapped function as its plain ``denoise(x, t)``; texture synthesis (BBDM), SPADE maps and
mask-conditioned inpainting all use the same wrapper.
"""

from __future__ import annotations

from typing import Callable

import torch

#: model(x, t, null) -> prediction; ``null`` (bool, one per sample) selects the learned null condition
NullableModel = Callable[[torch.Tensor, int, torch.Tensor], torch.Tensor]


def classifier_free(model: NullableModel, scale: float, conditional: bool = True) -> Callable[[torch.Tensor, int],
                                                                                               torch.Tensor]:
    """``denoise(x, t) = u + scale · (c − u)`` with c the conditional and u the null prediction.

    ``scale`` 1 (or an unconditional request, ``conditional=False``) costs one evaluation per step: the mixture
    is then the plain conditional (or null) prediction. Otherwise both run as one batch of twice the size.
    """
    if scale < 0:
        raise ValueError(f"guidance scale must be >= 0, got {scale}")

    def single(x: torch.Tensor, t: int) -> torch.Tensor:
        null = torch.full((x.shape[0],), not conditional, dtype=torch.bool, device=x.device)
        return model(x, t, null)

    if not conditional or scale == 1.0:
        return single

    def guided(x: torch.Tensor, t: int) -> torch.Tensor:
        b = x.shape[0]
        null = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(x.device)
        both = model(torch.cat([x, x]), t, null)
        cond, uncond = both[:b], both[b:]
        return uncond + scale * (cond - uncond)

    return guided
