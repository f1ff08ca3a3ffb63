"""ASCII: adjacent-slice conditional iterative inpainting (thesis chapter 6) — grow a stack slice by slice.

A score model of K adjacent axial slices (channels in increasing slice order) generates each new slice as the
unknown channel of a K-stack whose other K − 1 channels are the slices already there (channel-mask inpainting).
Growing *up* (increasing slice index) the unknown is the last channel, growing *down* the first: the joint model
serves both, so the stack is never flipped. The new slice, calibrated when a calibrator is given (IC-Net), becomes
part of the next step's condition (Fig. 17 of the thesis).

Seeding (the thesis leaves K = 3's first step open):

* the condition is always the K − 1 slices nearest the growth front; a seed range of ≥ K − 1 slices (the picked
  slice and its real neighbours) conditions the first step entirely on real data;
* with fewer seed slices than K − 1 (a single slice, or the air slice of an unconditional start, the thesis's x⁰
  padded before slice 1 in training), the first step inpaints the K − 1 missing slices *jointly* given the ones
  there and keeps them all. This stays inside the training distribution (the model saw [air, x¹, x²] windows)
  and needs no invented slices; duplicating the seed would show the model two identical adjacent slices, which
  it never saw.

Model units throughout; HU conversion, geometry and memory checks belong to the pipeline around this loop.
Progress is reported per sampler step, cancel is honoured within one sampler step, and a cancelled run returns
the slices finished so far, marked partial.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import torch

from ...errors import CancelledError, RadSynthError
from ...processes.ve_sde import VESDE, ScoreFn
from ...progress import CancelToken, ProgressFn
from ...samplers.score import (FAST_STEPS, Inpaint, channel_mask, fast_evaluations, geometric_sigmas,
                               pc_evaluations, sample_fast, sample_pc)

#: calibrate(new (B, H, W), previous neighbour (B, H, W)) -> calibrated new slice, model units
Calibrator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: on_slice(position, slice (B, H, W)): position counts from the first seed slice (0); below the seed is negative
SliceFn = Callable[[int, torch.Tensor], None]
#: before_stack(positions): the K slice positions (same count) of the stack about to be sampled, in channel order;
#: an organ-guided score reads its maps' condition from them
StackFn = Callable[[list[int]], None]


@dataclasses.dataclass(frozen=True)
class StackSampler:
    """One conditional draw of a K-stack: run(shape, inpaint, progress, cancel) -> (B, K, H, W)."""
    name: str
    evaluations: int                   # network evaluations per draw
    known_sigma: Optional[float]       # clean known channels at this level; None: replacement (thesis)
    run: Callable[[tuple[int, ...], Inpaint, Optional[ProgressFn], Optional[CancelToken]], torch.Tensor]


def pc_sampler(score: ScoreFn, sde: VESDE, steps: int = 1000, snr: float = 0.16, corrector_steps: int = 1,
               generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu") -> StackSampler:
    """The thesis's sampler: PC with replacement inpainting on the VE-SDE's geometric levels (1999 evaluations at
    1000 levels, the thesis's T)."""
    sigmas = geometric_sigmas(sde.sigma_min, sde.sigma_max, steps)

    def run(shape, inpaint, progress, cancel):
        return sample_pc(score, shape, sigmas, snr=snr, corrector_steps=corrector_steps, inpaint=inpaint,
                         generator=generator, device=device, progress=progress, cancel=cancel)

    return StackSampler(f"pc-{steps}", pc_evaluations(steps, corrector_steps), None, run)


def fast_sampler(score: ScoreFn, sde: VESDE, steps: int = FAST_STEPS,
                 generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu") -> StackSampler:
    """DPM-Solver++(2M) on Karras levels with clean known channels (a model trained with per-channel levels)."""

    def run(shape, inpaint, progress, cancel):
        return sample_fast(score, shape, sde.sigma_min, sde.sigma_max, steps=steps, inpaint=inpaint,
                           generator=generator, device=device, progress=progress, cancel=cancel)

    return StackSampler(f"fast-{steps}", fast_evaluations(steps), sde.sigma_min, run)


@dataclasses.dataclass
class Grown:
    """The stack after growing: seed slices in place, generated slices below and above, increasing slice index."""
    slices: torch.Tensor               # (B, N, H, W), model units
    seed_start: int                    # index of the first seed slice in ``slices`` (= slices generated below)
    seed_count: int                    # 0 for an unconditional start (the air slice is not part of the stack)
    requested_below: int
    requested_above: int
    evaluations: int                   # network evaluations per variant
    partial: bool = False

    @property
    def below(self) -> int:
        return self.seed_start

    @property
    def above(self) -> int:
        return self.slices.shape[1] - self.seed_start - self.seed_count

    @property
    def generated(self) -> torch.Tensor:
        """(N,) bool: True where the slice was generated."""
        flags = torch.ones(self.slices.shape[1], dtype=torch.bool)
        flags[self.seed_start:self.seed_start + self.seed_count] = False
        return flags


@dataclasses.dataclass
class _Front:
    """One growth direction: the slices so far, nearest the seed first."""
    direction: int                     # +1 up, -1 down
    wanted: int
    done: list[torch.Tensor]
    seed: list[torch.Tensor]           # seed slices ordered from the front inwards (nearest the front first)

    def context(self, count: int) -> list[torch.Tensor]:
        """The ``count`` slices nearest the front, ordered from the front inwards."""
        return (self.done[::-1] + self.seed)[:count]


def _as_batch(seed: torch.Tensor) -> torch.Tensor:
    if seed.dim() == 3:
        seed = seed.unsqueeze(0)
    if seed.dim() != 4 or seed.shape[1] < 1:
        raise RadSynthError(f"Seed slices must be (slices, rows, columns) or (variants, slices, rows, columns); got "
                            f"shape {tuple(seed.shape)}.")
    if not torch.isfinite(seed).all():
        raise RadSynthError("The seed slices contain values that are not finite numbers.")
    return seed


def grow(sampler: StackSampler, seed: Optional[torch.Tensor], slices: int, above: int = 0, below: int = 0,
         calibrate: Optional[Calibrator] = None, shape: Optional[tuple[int, int, int]] = None, air: float = -1.0,
         progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
         on_slice: Optional[SliceFn] = None, before_stack: Optional[StackFn] = None) -> Grown:
    """Grow ``above`` slices above and ``below`` slices below the ``seed`` slices with a K = ``slices`` model.

    ``seed``: (S, H, W) or (B, S, H, W) in model units, B variants grown at once; None starts from one air slice
    (value ``air``, shape ``shape`` = (B, H, W)) and grows up only, as the thesis's unconditional generation.
    Both directions alternate a slice at a time, so a live view and a cancelled run stay balanced around the seed.
    """
    if slices not in (2, 3):
        raise RadSynthError(f"ASCII stacks 2 or 3 adjacent slices (K); got {slices}.")
    if above < 0 or below < 0 or above + below == 0:
        raise RadSynthError("Ask for at least one slice to generate, above or below the seed.")
    if seed is None:
        if shape is None or len(shape) != 3:
            raise RadSynthError("An unconditional start needs the (variants, rows, columns) of the slices.")
        if below:
            raise RadSynthError("An unconditional volume grows up from the air slice; slices below it are not "
                                "defined.")
        base = torch.full((shape[0], 1, shape[1], shape[2]), float(air))
        seed_count = 0
    else:
        base = _as_batch(seed.float())
        seed_count = base.shape[1]
    batch, _, height, width = base.shape
    seed_list = [base[:, i] for i in range(base.shape[1])]
    fronts = []
    if above:
        fronts.append(_Front(+1, above, [], seed_list[::-1]))
    if below:
        fronts.append(_Front(-1, below, [], list(seed_list)))

    total = above + below
    done_count = 0
    evaluations = 0
    partial = False
    k = slices
    try:
        while any(len(f.done) < f.wanted for f in fronts):
            for front in fronts:
                if len(front.done) >= front.wanted:
                    continue
                if cancel is not None:
                    cancel.check()
                context = front.context(k - 1)                  # nearest the front first
                new_count = k - len(context)                    # 1, or K − 1 for the joint first step
                # channel order is slice order: up puts the context first, down puts it last
                stack_known = context[::-1] if front.direction > 0 else context
                known_idx = list(range(len(context))) if front.direction > 0 else list(range(new_count, k))
                known = torch.zeros(batch, k, height, width)
                known[:, known_idx] = torch.stack(stack_known, 1)
                inpaint = Inpaint(known, channel_mask(k, known_idx), known_sigma=sampler.known_sigma)
                keep = min(new_count, front.wanted - len(front.done))
                base_fraction = done_count / total
                step_progress = None
                if progress is not None:
                    label = f"slice {done_count + 1}/{total} ({'up' if front.direction > 0 else 'down'})"
                    step_progress = (lambda f, _s, b=base_fraction, n=keep, lab=label:
                                     progress(min(b + f * n / total, 1.0), lab))
                if before_stack is not None:
                    if front.direction > 0:
                        first_new = seed_count + len(front.done)
                        lowest = first_new - len(context)
                    else:
                        lowest = -len(front.done) - new_count
                    before_stack(list(range(lowest, lowest + k)))
                out = sampler.run((batch, k, height, width), inpaint, step_progress, cancel)
                evaluations += sampler.evaluations
                new_idx = [c for c in range(k) if c not in known_idx]
                # order the new slices from the front's old edge outwards
                ordered = [out[:, c] for c in (new_idx if front.direction > 0 else new_idx[::-1])]
                for new in ordered[:keep]:
                    neighbour = front.context(1)[0]
                    if calibrate is not None:
                        new = calibrate(new, neighbour)
                    front.done.append(new)
                    done_count += 1
                    if on_slice is not None:
                        position = (seed_count - 1 + len(front.done) if front.direction > 0
                                    else -len(front.done))
                        on_slice(position, new)
    except CancelledError:
        partial = True

    up = next((f.done for f in fronts if f.direction > 0), [])
    down = next((f.done for f in fronts if f.direction < 0), [])
    seeds = seed_list if seed_count else []
    stack = torch.stack(down[::-1] + seeds + up, 1) if (down or seeds or up) else base[:, :0]
    return Grown(stack, len(down), seed_count, below, above, evaluations, partial)
