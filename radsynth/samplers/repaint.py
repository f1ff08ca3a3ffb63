"""RePaint (Lugmayr et al., CVPR 2022): inpainting with an *unconditional* diffusion model by resampling.

Plain replacement inpainting (noise the known pixels to the current level, let the model move the rest) gives fills
that do not match their surroundings: the model only ever sees the known pixels through one noisy step, and a fill
that took a wrong turn early is never revisited. RePaint revisits it: after reaching some level it jumps back up by
``jump_length`` levels (a draw of the forward process) and denoises again, ``resample`` times per checkpoint, so the
generated part is harmonised with the known part at every scale.

Written from the paper and the idea of the reference's time schedule (``guided_diffusion/scheduler.py``,
``p_sample_loop_progressive``; CC BY-NC-SA, not copied). Differences, on purpose:

* The reverse step is :func:`radsynth.samplers.ddim.transition` on any grid of MONAI training timesteps, so RePaint
  runs on 20–50 levels with η = 1 (ancestral, the paper's) or η < 1, instead of the reference's 250 respaced DDPM
  steps.
* A jump of j levels is one draw from q(x_{t+j} | x_t) (the forward chain is Markov and Gaussian, so this has the
  distribution of the reference's j single-step re-noisings) instead of j draws.
* Only the paper's one jump level; the reference's extra nested jump levels (``jump2``, ``jump3``) are not used by
  its published configurations.

Any unconditional 2D model works: the sampler takes ``denoise(x, t)`` (ε, x0 or v per the MONAI schedule), so a
guided SDM (``radsynth.samplers.guidance.classifier_free``) can be inpainted the same way.
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from ..progress import CancelToken, ProgressFn
from .ddim import CLEAN, Denoiser, alpha_bar, q_sample, randn, renoise, timestep_grid, transition, x0_and_eps

#: the paper's setting (250 levels, jumps of 10, 10 resamples) costs ~2,400 evaluations; these are the defaults
#: for interactive use: 25 levels, jumps of 5 levels, each checkpoint passed twice (45 evaluations)
DEFAULT_STEPS = 25
DEFAULT_JUMP = 5
DEFAULT_RESAMPLE = 2


def jump_schedule(steps: int, jump_length: int = DEFAULT_JUMP, resample: int = DEFAULT_RESAMPLE) -> list[int]:
    """The walk over level indices: ``steps - 1`` (pure noise) … 0, then :data:`CLEAN` (-1).

    Each reverse step goes down one level. On reaching a checkpoint (level 0, j, 2j, … below the top), while it has
    passes left, the walk jumps back up by j = ``jump_length`` and descends again: every checkpoint is passed
    ``resample`` times. ``resample`` 1 (or ``jump_length`` 0) is plain descent.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if resample < 1 or jump_length < 0:
        raise ValueError(f"resample must be >= 1 and jump_length >= 0, got {resample}, {jump_length}")
    passes_left = {}
    if resample > 1 and jump_length > 0:
        passes_left = {c: resample - 1 for c in range(0, steps - jump_length, jump_length)}
    level = steps - 1
    walk = [level]
    while level > CLEAN:
        level -= 1
        walk.append(level)
        if passes_left.get(level, 0) > 0:
            passes_left[level] -= 1
            level += jump_length
            walk.append(level)
    return walk


def evaluations(steps: int, jump_length: int = DEFAULT_JUMP, resample: int = DEFAULT_RESAMPLE) -> int:
    """Network evaluations of :func:`sample_repaint`: one per reverse step of the walk (per guidance branch)."""
    walk = jump_schedule(steps, jump_length, resample)
    return sum(1 for a, b in zip(walk, walk[1:]) if b < a)


@torch.no_grad()
def sample_repaint(denoise: Denoiser, known: torch.Tensor, mask: torch.Tensor, scheduler: Any,
                   steps: int = DEFAULT_STEPS, jump_length: int = DEFAULT_JUMP, resample: int = DEFAULT_RESAMPLE,
                   eta: float = 1.0, generator: Optional[torch.Generator] = None,
                   progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                   clip: Optional[bool] = None, noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fill where ``mask`` is 1 so that it fits ``known`` (kept where ``mask`` is 0, bit for bit).

    ``known``: (B, C, H, W) in model units; ``mask`` broadcastable to it. ``steps`` levels of the MONAI schedule
    (:func:`radsynth.samplers.ddim.timestep_grid`), ``jump_length`` and ``resample`` as in :func:`jump_schedule`;
    ``eta`` 1 is the paper's ancestral step. ``noise`` is the x_T draw (default: from ``generator``).
    ``progress(fraction, "sample")`` after each transition, ``cancel.check()`` before it.
    """
    grid = timestep_grid(scheduler, steps)
    levels = [alpha_bar(scheduler, t) for t in grid]
    walk = jump_schedule(len(grid), jump_length, resample)
    generate = (mask > 0.5).to(known.device).expand_as(known)

    def level_a(index: int) -> float:
        return 1.0 if index == CLEAN else levels[index]

    def with_known(x: torch.Tensor, index: int) -> torch.Tensor:
        ref = known if index == CLEAN else q_sample(known, level_a(index), randn(x.shape, generator, x))
        return torch.where(generate, x, ref)

    x = randn(known.shape, generator, known) if noise is None else noise.to(known.device, known.dtype)
    x = with_known(x, walk[0])
    pairs = list(zip(walk, walk[1:]))
    for n, (cur, nxt) in enumerate(pairs):
        if cancel is not None:
            cancel.check()
        if nxt < cur:
            t = grid[cur]
            x0, eps = x0_and_eps(scheduler, denoise(x, t), x, t, clip)
            z = randn(x.shape, generator, x) if eta > 0 and nxt != CLEAN else None
            x = with_known(transition(x0, eps, level_a(cur), level_a(nxt), eta, z), nxt)
        else:
            x = renoise(x, level_a(cur), level_a(nxt), randn(x.shape, generator, x))
        if progress is not None:
            progress((n + 1) / len(pairs), "sample")
    return x
