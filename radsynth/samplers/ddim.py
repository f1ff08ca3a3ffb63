"""DDIM / DDPM sampling over a MONAI noise schedule, with progress and cancel: a plain function over (denoise, x,
schedule, steps).

The schedule (``alphas_cumprod``, ``num_train_timesteps``, ``prediction_type``, ``clip_sample``) comes from MONAI's
``DDPMScheduler`` or ``DDIMScheduler``, the same objects the networks are trained with. The *transition* between two
timesteps is computed here from the explicit pair (t, s) rather than with the schedulers' ``step()``, because MONAI
1.6.1's ``step()`` assumes evenly spaced steps: ``DDIMScheduler.step`` goes back by ``T // steps`` while its own
``set_timesteps`` spaces steps by ``linspace(...).round()`` (e.g. 999, 979, 958 … for 50 steps, not 999, 979, 959),
and ``DDPMScheduler.step`` always goes from t to t − 1. RePaint's jumps and any skip-step DDPM need arbitrary pairs;
the unit tests check that this transition equals MONAI's ``step()`` wherever MONAI's spacing is the real one.

One transition (Song et al. 2021, eq. 12 and 16) from noise level t to s < t, with ᾱ the cumulative product:

    x_s = √ᾱ_s · x̂0 + √(1 − ᾱ_s − σ²) · ε̂ + σ · z,   σ = η · √((1 − ᾱ_s)/(1 − ᾱ_t)) · √(1 − ᾱ_t/ᾱ_s)

η = 0 is DDIM (deterministic), η = 1 is ancestral DDPM on the chosen timesteps (σ² is then the DDPM posterior
variance β̃). ε̂ is recomputed from the clipped x̂0 so that both always describe the same x_t.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import numpy as np
import torch

from ..progress import CancelToken, ProgressFn

#: denoise(x_t, t) -> the network's output in the schedule's prediction type (ε, x0 or v); t an int timestep
Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
#: noise level index -1: the clean image (ᾱ = 1)
CLEAN = -1


def randn(shape: torch.Size | tuple[int, ...], generator: Optional[torch.Generator], like: torch.Tensor
          ) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (one seed, the same sample on every device)."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(like.device, like.dtype)


def timestep_grid(scheduler: Any, steps: int) -> list[int]:
    """``steps`` training timesteps, ascending and evenly spread from T − 1 down (MONAI's ``set_timesteps`` grid);
    two or more steps include t = 0."""
    total = int(scheduler.num_train_timesteps)
    if not 1 <= int(steps) <= total:
        raise ValueError(f"steps must be between 1 and the {total} training timesteps, got {steps}")
    grid = np.unique(np.round(np.linspace(total - 1, 0, int(steps))).astype(int))
    return [int(t) for t in grid]


def alpha_bar(scheduler: Any, t: int) -> float:
    """ᾱ_t of the schedule; ᾱ_{-1} = 1 (the clean image)."""
    return 1.0 if t < 0 else float(scheduler.alphas_cumprod[int(t)])


def _clip(scheduler: Any) -> Optional[tuple[float, float]]:
    if not getattr(scheduler, "clip_sample", False):
        return None
    lo, hi = getattr(scheduler, "clip_sample_values", (-1.0, 1.0))
    return float(lo), float(hi)


def x0_and_eps(scheduler: Any, output: torch.Tensor, x: torch.Tensor, t: int,
               clip: Optional[bool] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂0, ε̂) from the network's output at timestep t in the schedule's prediction type.

    ``clip`` None follows the scheduler's ``clip_sample``; clipping applies to x̂0 and ε̂ follows it."""
    a = alpha_bar(scheduler, t)
    sa, sb = math.sqrt(a), math.sqrt(1.0 - a)
    kind = str(getattr(scheduler, "prediction_type", "epsilon"))
    if kind == "epsilon":
        x0 = (x - sb * output) / sa
    elif kind == "sample":
        x0 = output
    elif kind == "v_prediction":
        x0 = sa * x - sb * output
    else:
        raise ValueError(f"unknown prediction type {kind!r}")
    limits = _clip(scheduler) if clip is None else ((-1.0, 1.0) if clip else None)
    if limits is not None:
        x0 = x0.clamp(*limits)
    eps = (x - sa * x0) / sb if kind != "epsilon" or limits is not None else output
    return x0, eps


def transition(x0: torch.Tensor, eps: torch.Tensor, a_t: float, a_s: float, eta: float,
               noise: Optional[torch.Tensor]) -> torch.Tensor:
    """x_s from (x̂0, ε̂) at level ᾱ_t, for a less noisy level ᾱ_s ≥ ᾱ_t (see the module docstring)."""
    var = 0.0
    if eta > 0 and a_s < 1.0:
        var = eta ** 2 * (1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s)
    out = math.sqrt(a_s) * x0 + math.sqrt(max(1.0 - a_s - var, 0.0)) * eps
    if var > 0:
        if noise is None:
            raise ValueError("a stochastic step (eta > 0) needs noise")
        out = out + math.sqrt(var) * noise
    return out


def renoise(x: torch.Tensor, a_from: float, a_to: float, noise: torch.Tensor) -> torch.Tensor:
    """A draw of the forward process q(x_to | x_from) for a noisier level (ᾱ_to ≤ ᾱ_from): one Gaussian step for any
    number of timesteps, since the forward chain is Markov and Gaussian."""
    ratio = a_to / a_from
    return math.sqrt(ratio) * x + math.sqrt(max(1.0 - ratio, 0.0)) * noise


def q_sample(x0: torch.Tensor, a: float, noise: torch.Tensor) -> torch.Tensor:
    """x_t = √ᾱ x0 + √(1 − ᾱ) ε; at ᾱ = 1 it returns x0 itself."""
    if a >= 1.0:
        return x0
    return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise


def evaluations(steps: int, strength: float = 1.0) -> int:
    """Network evaluations of :func:`sample_ddim` (per guidance branch)."""
    return kept_steps(steps, strength)


def kept_steps(steps: int, strength: float) -> int:
    """How many of ``steps`` run when regenerating with ``strength``: SDEdit-style, the chain starts part-way down."""
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    return max(1, int(round(strength * steps)))


@torch.no_grad()
def sample_ddim(denoise: Denoiser, noise: torch.Tensor, scheduler: Any, steps: int, eta: float = 0.0,
                generator: Optional[torch.Generator] = None, progress: Optional[ProgressFn] = None,
                cancel: Optional[CancelToken] = None, init: Optional[torch.Tensor] = None,
                strength: float = 1.0, known: Optional[torch.Tensor] = None, mask: Optional[torch.Tensor] = None,
                clip: Optional[bool] = None) -> torch.Tensor:
    """Sample x0 from ``noise`` (the x_T draw) over ``steps`` evenly spread timesteps.

    ``init`` and ``strength`` < 1: regenerate ``init`` (new texture, same layout) by noising it to the level of the
    top ``strength`` share of the grid (``noise`` is the noise added) and denoising from there. ``known`` + ``mask``
    (1 = generate, 0 = keep): after every step the kept pixels are replaced by ``known`` noised to the new level
    (plain replacement inpainting; :func:`radsynth.samplers.repaint.sample_repaint` adds RePaint's resampling), and
    the result holds ``known`` there bit for bit. ``progress`` after each step, ``cancel.check()`` before it.
    """
    grid = timestep_grid(scheduler, steps)[::-1]   # descending
    if init is not None:
        grid = grid[len(grid) - kept_steps(len(grid), strength):]
        x = q_sample(init, alpha_bar(scheduler, grid[0]), noise)
    elif strength != 1.0:
        raise ValueError("strength < 1 regenerates an image: pass it as init")
    else:
        x = noise
    keep = _Keep(known, mask, scheduler, generator)
    x = keep(x, grid[0])
    for i, t in enumerate(grid):
        if cancel is not None:
            cancel.check()
        s = grid[i + 1] if i + 1 < len(grid) else CLEAN
        x0, eps = x0_and_eps(scheduler, denoise(x, int(t)), x, t, clip)
        z = randn(x.shape, generator, x) if eta > 0 and s >= 0 else None
        x = keep(transition(x0, eps, alpha_bar(scheduler, t), alpha_bar(scheduler, s), eta, z), s)
        if progress is not None:
            progress((i + 1) / len(grid), "sample")
    return x


class _Keep:
    """Known-region replacement at a noise level: the known pixels noised to it (exact at the clean level)."""

    def __init__(self, known: Optional[torch.Tensor], mask: Optional[torch.Tensor], scheduler: Any,
                 generator: Optional[torch.Generator]) -> None:
        if (known is None) != (mask is None):
            raise ValueError("known and mask go together")
        self.known, self.scheduler, self.generator = known, scheduler, generator
        self.generate = None if mask is None else mask > 0.5

    def __call__(self, x: torch.Tensor, t: int) -> torch.Tensor:
        if self.known is None:
            return x
        known = self.known.to(x.device, x.dtype).expand_as(x)
        if t >= 0:
            known = q_sample(known, alpha_bar(self.scheduler, t), randn(x.shape, self.generator, x))
        # where, not a weighted sum: at the clean level the known pixels come back bit for bit
        return torch.where(self.generate.to(x.device).expand_as(x), x, known)


#: the schedule a card gets when it names none: DDPM's linear β from 1e-4 to 0.02 over 1000 steps, ε-prediction
DEFAULT_SCHEDULE: dict[str, Any] = {"num_train_timesteps": 1000, "schedule": "linear_beta", "beta_start": 1e-4,
                                    "beta_end": 0.02, "prediction_type": "epsilon", "clip_sample": True}


def make_scheduler(config: Optional[dict[str, Any]] = None):
    """The MONAI ``DDPMScheduler`` a model card's ``schedule`` describes (training and sampling use the same one)."""
    from monai.networks.schedulers import DDPMScheduler

    cfg = {**DEFAULT_SCHEDULE, **(config or {})}
    args = {k: cfg[k] for k in ("num_train_timesteps", "schedule", "prediction_type", "clip_sample")}
    extra = {k: v for k, v in cfg.items() if k not in args}
    if cfg["schedule"] not in ("linear_beta", "scaled_linear_beta"):
        extra = {k: v for k, v in extra.items() if k not in ("beta_start", "beta_end")}
    return DDPMScheduler(**args, **extra)
