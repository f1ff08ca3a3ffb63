"""Skip-step Brownian-bridge sampler: x_T = y → x_0 over any subset of the training timesteps.

For each pair of consecutive timesteps (t, n) the update keeps the marginal q(x_n | x0, y) of the forward process
given the predicted x0. eta = 0 is deterministic (DDIM-like); eta = 1 adds the posterior variance as in BBDM.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import torch

from ..processes.bridge import BrownianBridge
from ..progress import CancelToken, ProgressFn

#: denoise(x_t, t) -> predicted "grad" (same shape as x_t); t is an int timestep
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]


@torch.no_grad()
def sample_bridge(denoise: Denoiser, y: torch.Tensor, bridge: BrownianBridge, steps: int, eta: float = 0.0,
                  generator: Optional[torch.Generator] = None, progress: Optional[ProgressFn] = None,
                  cancel: Optional[CancelToken] = None) -> torch.Tensor:
    timesteps = bridge.step_list(steps)
    m, delta = bridge.m.tolist(), bridge.delta.tolist()
    x = y.clone()  # delta_T is ~0.002, so the chain starts exactly at the source as in BBDM
    for i, t in enumerate(timesteps):
        if cancel is not None:
            cancel.check()
        x0 = bridge.predict_x0(x, denoise(x, t))
        if t == 0 or i == len(timesteps) - 1:
            x = x0
        else:
            n = timesteps[i + 1]
            var = eta ** 2 * (delta[t] - delta[n] * (1 - m[t]) ** 2 / (1 - m[n]) ** 2) * delta[n] / delta[t]
            var = min(max(var, 0.0), delta[n])
            noise_dir = (x - (1 - m[t]) * x0 - m[t] * y) / math.sqrt(delta[t])
            x = (1 - m[n]) * x0 + m[n] * y + math.sqrt(delta[n] - var) * noise_dir
            if var > 0:
                z = torch.randn(x.shape, generator=generator, device="cpu").to(x.device, x.dtype)
                x = x + math.sqrt(var) * z
        if progress is not None:
            progress((i + 1) / len(timesteps), "sample")
    return x
