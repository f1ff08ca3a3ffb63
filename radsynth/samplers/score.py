"""Samplers for a VE score model s(x, σ): predictor–corrector (the thesis's), and the fast ODE samplers on a Karras
schedule: DPM-Solver++(2M) (the default fast sampler) and Heun (EDM).

Each sampler is a plain function over (score, shape, sigmas, ...), k-diffusion style: ``sigmas`` is the descending
noise schedule, ``progress(fraction, stage)`` is called after every step and ``cancel.check()`` before every step, so
a cancel takes effect within one step. ``callback`` sees every intermediate state (tests, live previews).

Inpainting by channel mask (:class:`Inpaint`), two ways, both replacing the known entries after every predictor
and every corrector update:

* **replacement** (the thesis's Algorithm 1, score_sde's inpainter): known entries ← seed + σ z at the current
  level, the model sees every channel at the same σ. Correct only when the sampler mixes strongly at low noise,
  i.e. the PC sampler with many levels (1000 in the thesis).
* **clean known channels** (``known_sigma``): known entries ← the seed itself, and the model is told their noise
  level is ``known_sigma`` (σ_min) while the generated channels are at σ: the network, trained with such mixed
  levels (MCVD-style, :func:`radsynth.processes.ve_sde.sample_training_sigmas`), then gives the conditional score
  itself and any sampler, an ODE solver included, samples the conditional distribution. The fast sampler does this.

Network evaluations (NFE) per sample: :func:`pc_evaluations`, :func:`fast_evaluations`, :func:`heun_evaluations`.
The thesis's PC sampler at 1000 levels with one corrector step costs 1999; the fast sampler 39. Measurements behind
these choices: docs/ctgenerate-slices.md.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Optional

import torch

from ..processes.ve_sde import ScoreFn
from ..progress import CancelToken, ProgressFn

#: callback({"i": step, "stage": "predictor" | "corrector" | "denoise" | "churn", "sigma": float, "x": tensor})
Callback = Callable[[dict[str, Any]], None]

#: the fast sampler's default: 39 Karras levels, 39 network evaluations
FAST_STEPS = 39


def _randn(shape: torch.Size | tuple[int, ...], generator: Optional[torch.Generator], like: torch.Tensor
           ) -> torch.Tensor:
    # drawn on the CPU so a seed gives the same sample on every device
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(like.device, like.dtype)


@dataclasses.dataclass
class Inpaint:
    """Known entries (mask 1) of ``known`` kept on the seed after every update.

    ``known``: the clean values (B, K, H, W); only its masked entries are used. ``mask``: broadcastable to the
    sample, e.g. :func:`channel_mask` (1, K, 1, 1) for ASCII. ``known_sigma`` None: replacement by the seed plus
    fresh noise of the current level (the thesis). A number: the known channels hold the seed exactly and the score
    is asked with that noise level on them (needs a channel mask and a model trained with per-channel levels).
    """
    known: torch.Tensor
    mask: torch.Tensor
    known_sigma: Optional[float] = None

    def __post_init__(self) -> None:
        self.mask = self.mask.to(self.known.dtype)
        if not torch.all((self.mask == 0) | (self.mask == 1)):
            raise ValueError("an inpainting mask holds 0 (generate) and 1 (known) only")
        if self.known_sigma is not None:
            if not self.known_sigma > 0:
                raise ValueError(f"known_sigma must be > 0 (the model's sigma_min), got {self.known_sigma}")
            if self.mask.dim() != 4 or self.mask.shape[0] != 1 or self.mask.shape[2:] != (1, 1):
                raise ValueError("clean known channels need a channel mask of shape (1, K, 1, 1)")

    @property
    def replacement(self) -> bool:
        return self.known_sigma is None

    def __call__(self, x: torch.Tensor, sigma: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        known = self.known.to(x.device, x.dtype).expand_as(x)
        if self.replacement and sigma > 0:
            known = known + float(sigma) * _randn(x.shape, generator, x)
        # where, not a weighted sum: at σ = 0 (and always with clean known channels) the seed comes back bit for bit
        return torch.where(self.mask.to(x.device) > 0.5, known, x)

    def levels(self, sigma: float, x: torch.Tensor) -> torch.Tensor:
        """The noise level(s) the score is asked with: (B,) for replacement, (B, K) with clean known channels."""
        if self.replacement:
            return _levels(sigma, x)
        channel = self.mask.view(-1).to(x.device, x.dtype)
        per_channel = channel * self.known_sigma + (1 - channel) * float(sigma)
        return per_channel.expand(x.shape[0], -1).contiguous()

    def generated_weight(self, x: torch.Tensor) -> torch.Tensor:
        """1 on the generated entries, 0 on the known ones, shaped like ``x``."""
        return torch.ones_like(x) * (1 - self.mask.to(x.device, x.dtype))


def _levels(sigma: float, x: torch.Tensor, inpaint: Optional[Inpaint] = None) -> torch.Tensor:
    if inpaint is not None:
        return inpaint.levels(sigma, x)
    return torch.full((x.shape[0],), float(sigma), device=x.device, dtype=x.dtype)


def channel_mask(channels: int, known: list[int] | tuple[int, ...]) -> torch.Tensor:
    """(1, K, 1, 1) mask with 1 on the ``known`` channels: the diagonal of the thesis's Λ."""
    if not known or any(not 0 <= c < channels for c in known) or len(set(known)) == channels:
        raise ValueError(f"known channels {list(known)} must be a proper, non-empty subset of 0..{channels - 1}")
    mask = torch.zeros(1, channels, 1, 1)
    mask[:, list(known)] = 1.0
    return mask


# -- schedules --------------------------------------------------------------------------------------------------
def geometric_sigmas(sigma_min: float, sigma_max: float, steps: int) -> torch.Tensor:
    """``steps`` levels from σ_max to σ_min, evenly spaced in log σ: the VE-SDE's own discretisation."""
    if steps < 2:
        raise ValueError(f"a noise schedule needs at least 2 levels, got {steps}")
    return torch.exp(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps, dtype=torch.float64))


def karras_sigmas(sigma_min: float, sigma_max: float, steps: int, rho: float = 7.0) -> torch.Tensor:
    """EDM schedule (Karras et al. 2022, eq. 5): ``steps`` levels σ_max → σ_min evenly spaced in σ^(1/ρ), then 0.

    ρ = 7 spends more steps at low noise, where fine anatomy is decided.
    """
    if steps < 2:
        raise ValueError(f"a noise schedule needs at least 2 levels, got {steps}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def pc_evaluations(steps: int, corrector_steps: int = 1, denoise: bool = True) -> int:
    """Network evaluations of :func:`sample_pc` with ``steps`` noise levels."""
    return (steps - 1) * (1 + corrector_steps) + int(denoise)


def heun_evaluations(steps: int) -> int:
    """Network evaluations of :func:`sample_heun` on ``steps`` Karras levels (the last step to 0 is Euler)."""
    return 2 * steps - 1


def _tick(progress: Optional[ProgressFn], done: int, total: int) -> None:
    if progress is not None:
        progress(done / total, "sample")


def _emit(callback: Optional[Callback], i: int, stage: str, sigma: float, x: torch.Tensor) -> None:
    if callback is not None:
        callback({"i": i, "stage": stage, "sigma": float(sigma), "x": x})


def _start(shape: tuple[int, ...], sigma_max: float, generator: Optional[torch.Generator],
           device: torch.device | str, inpaint: Optional[Inpaint]) -> torch.Tensor:
    x = torch.randn(tuple(shape), generator=generator, dtype=torch.float32).to(device) * sigma_max
    return inpaint(x, sigma_max, generator) if inpaint is not None else x


# -- predictor–corrector ----------------------------------------------------------------------------------------
def _norm(v: torch.Tensor, weight: Optional[torch.Tensor]) -> torch.Tensor:
    """Per-sample L2 norm, over the generated entries only when ``weight`` is given."""
    if weight is not None:
        v = v * weight
    return v.flatten(1).norm(dim=1)


def langevin_step(score: ScoreFn, x: torch.Tensor, levels: torch.Tensor, snr: float,
                  generator: Optional[torch.Generator] = None, weight: Optional[torch.Tensor] = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """One Langevin corrector step with step ε = 2 (snr ‖z‖ / ‖s‖)²; returns (x, x_mean).

    As score_sde's LangevinCorrector, but the norms are per sample (a sample's result does not depend on what else
    is in the batch) and, when inpainting, taken over the generated entries only (the others are replaced).
    """
    grad = score(x, levels)
    noise = _randn(x.shape, generator, x)
    ratio = _norm(noise, weight) / _norm(grad, weight).clamp_min(1e-20)
    eps = (2.0 * (snr * ratio) ** 2).view(-1, *([1] * (x.dim() - 1)))
    x_mean = x + eps * grad
    return x_mean + torch.sqrt(2.0 * eps) * noise, x_mean


def reverse_diffusion_step(score: ScoreFn, x: torch.Tensor, sigma: float, sigma_next: float, levels: torch.Tensor,
                           generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse-diffusion predictor σ → σ_next: x + (σ² − σ_next²) s(x, σ) + sqrt(σ² − σ_next²) z."""
    var = sigma ** 2 - sigma_next ** 2
    x_mean = x + var * score(x, levels)
    return x_mean + math.sqrt(var) * _randn(x.shape, generator, x), x_mean


def ancestral_step(score: ScoreFn, x: torch.Tensor, sigma: float, sigma_next: float, levels: torch.Tensor,
                   generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral predictor σ → σ_next: the same mean, with the noise of the posterior q(x_σnext | x_σ, x_0),
    std σ_next sqrt(1 − σ_next²/σ²) (score_sde's AncestralSamplingPredictor for VE)."""
    var = sigma ** 2 - sigma_next ** 2
    x_mean = x + var * score(x, levels)
    return x_mean + (sigma_next * math.sqrt(var) / sigma) * _randn(x.shape, generator, x), x_mean


PREDICTORS = {"reverse_diffusion": reverse_diffusion_step, "ancestral": ancestral_step}


def _check_levels(sigmas: torch.Tensor, final_zero: bool) -> list[float]:
    levels = [float(s) for s in sigmas]
    if len(levels) < 2 or any(a <= b for a, b in zip(levels, levels[1:])):
        raise ValueError("sigmas must be at least 2 strictly decreasing noise levels")
    if final_zero and levels[-1] != 0:
        raise ValueError("Heun's sigmas must be strictly decreasing noise levels ending with 0")
    if not final_zero and levels[-1] <= 0:
        raise ValueError("PC sigmas must be strictly decreasing positive noise levels")
    return levels


@torch.no_grad()
def sample_pc(score: ScoreFn, shape: tuple[int, ...], sigmas: torch.Tensor, snr: float = 0.16,
              corrector_steps: int = 1, predictor: str = "reverse_diffusion", inpaint: Optional[Inpaint] = None,
              denoise: bool = True, generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
              progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
              callback: Optional[Callback] = None) -> torch.Tensor:
    """Predictor–corrector sampling (reverse diffusion + Langevin) from σ_max = sigmas[0] down to sigmas[-1].

    Order as in the thesis's Algorithm 1: predictor to the next level, replace, corrector at that level, replace.
    ``snr`` is the corrector's signal-to-noise ratio (score_sde: 0.15–0.17; the thesis does not give its value).
    ``predictor``: "reverse_diffusion" (the thesis's) or "ancestral". ``denoise`` ends with x + σ_min² s(x, σ_min),
    the posterior mean (Tweedie), as score_sde's noise removal does; the known entries are then the seed exactly.
    """
    levels = _check_levels(sigmas, final_zero=False)
    if snr <= 0 or corrector_steps < 0:
        raise ValueError(f"snr must be > 0 and corrector_steps >= 0 (got {snr}, {corrector_steps})")
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; choose one of {', '.join(PREDICTORS)}")
    step = PREDICTORS[predictor]
    x = _start(shape, levels[0], generator, device, inpaint)
    weight = inpaint.generated_weight(x) if inpaint is not None else None
    total = len(levels) - 1 + int(denoise)
    for i in range(len(levels) - 1):
        if cancel is not None:
            cancel.check()
        sigma, nxt = levels[i], levels[i + 1]
        x, _ = step(score, x, sigma, nxt, _levels(sigma, x, inpaint), generator)
        if inpaint is not None:
            x = inpaint(x, nxt, generator)
        _emit(callback, i, "predictor", nxt, x)
        for _ in range(corrector_steps):
            x, _ = langevin_step(score, x, _levels(nxt, x, inpaint), snr, generator, weight)
            if inpaint is not None:
                x = inpaint(x, nxt, generator)
            _emit(callback, i, "corrector", nxt, x)
        _tick(progress, i + 1, total)
    if denoise:
        if cancel is not None:
            cancel.check()
        x = x + levels[-1] ** 2 * score(x, _levels(levels[-1], x, inpaint))
        if inpaint is not None:
            x = inpaint(x, 0.0, generator)
        _emit(callback, len(levels) - 1, "denoise", 0.0, x)
        _tick(progress, total, total)
    return x


# -- Heun (EDM) ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def sample_heun(score: ScoreFn, shape: tuple[int, ...], sigmas: torch.Tensor, inpaint: Optional[Inpaint] = None,
                churn: float = 0.0, churn_range: tuple[float, float] = (0.0, math.inf),
                generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
                progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                callback: Optional[Callback] = None) -> torch.Tensor:
    """Heun's 2nd-order method on the probability-flow ODE dx/dσ = −σ s(x, σ) (EDM Algorithm 2).

    ``sigmas``: descending, ending in 0 (:func:`karras_sigmas`). ``churn`` (EDM's S_churn) > 0 raises the noise level
    by a factor (1 + γ), γ = min(churn / steps, √2 − 1), before each step inside ``churn_range``, adding fresh noise;
    0 is the deterministic sampler. The Euler step is the predictor and the trapezoidal correction the corrector;
    inpainting replaces the known entries after each. Use clean known channels (``Inpaint.known_sigma``) for
    conditional stacks: with replacement the ODE misses the conditional distribution at any step count.
    """
    levels = _check_levels(sigmas, final_zero=True)
    steps = len(levels) - 1
    gamma_max = min(churn / steps, math.sqrt(2.0) - 1.0) if churn > 0 else 0.0
    x = _start(shape, levels[0], generator, device, inpaint)
    for i in range(steps):
        if cancel is not None:
            cancel.check()
        sigma, nxt = levels[i], levels[i + 1]
        gamma = gamma_max if churn_range[0] <= sigma <= churn_range[1] else 0.0
        hat = sigma * (1.0 + gamma)
        if gamma > 0:
            x = x + math.sqrt(hat ** 2 - sigma ** 2) * _randn(x.shape, generator, x)
            if inpaint is not None:
                x = inpaint(x, hat, generator)
            _emit(callback, i, "churn", hat, x)
        d = -hat * score(x, _levels(hat, x, inpaint))
        x_next = x + (nxt - hat) * d
        if inpaint is not None:
            x_next = inpaint(x_next, nxt, generator)
        _emit(callback, i, "predictor", nxt, x_next)
        if nxt > 0:
            d_next = -nxt * score(x_next, _levels(nxt, x_next, inpaint))
            x_next = x + (nxt - hat) * 0.5 * (d + d_next)
            if inpaint is not None:
                x_next = inpaint(x_next, nxt, generator)
            _emit(callback, i, "corrector", nxt, x_next)
        x = x_next
        _tick(progress, i + 1, steps)
    return x


@torch.no_grad()
def sample_dpmpp_2m(score: ScoreFn, shape: tuple[int, ...], sigmas: torch.Tensor, inpaint: Optional[Inpaint] = None,
                    generator: Optional[torch.Generator] = None, device: torch.device | str = "cpu",
                    progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                    callback: Optional[Callback] = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) on the probability-flow ODE: one evaluation per level.

    Works on the denoised estimate D(x, σ) = x + σ² s(x, σ) in log σ: a first-order step is exact when D is constant
    along the path, and the second-order multistep term reuses the previous level's D, so it costs no extra
    evaluation. ``sigmas`` descending and ending in 0 (:func:`karras_sigmas`); the step to 0 returns D. Known
    entries are replaced after every step.
    """
    levels = _check_levels(sigmas, final_zero=True)
    steps = len(levels) - 1
    x = _start(shape, levels[0], generator, device, inpaint)
    previous: Optional[torch.Tensor] = None
    for i in range(steps):
        if cancel is not None:
            cancel.check()
        sigma, nxt = levels[i], levels[i + 1]
        denoised = x + sigma ** 2 * score(x, _levels(sigma, x, inpaint))
        if nxt == 0:
            x = denoised
        else:
            h = math.log(sigma / nxt)
            target = denoised
            if previous is not None:
                r = math.log(levels[i - 1] / sigma) / h
                target = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (nxt / sigma) * x - math.expm1(-h) * target
        if inpaint is not None:
            x = inpaint(x, nxt, generator)
        _emit(callback, i, "predictor", nxt, x)
        previous = denoised
        _tick(progress, i + 1, steps)
    return x


def sample_fast(score: ScoreFn, shape: tuple[int, ...], sigma_min: float, sigma_max: float,
                steps: int = FAST_STEPS, inpaint: Optional[Inpaint] = None, rho: float = 7.0,
                **kwargs: Any) -> torch.Tensor:
    """The fast sampler: DPM-Solver++(2M) on ``steps`` Karras levels, ``steps`` evaluations (39 by default).

    Chosen over Heun on the Gaussian test: at 39 evaluations its conditional variance is within 4 %, Heun's
    (20 levels) 12 % too wide. Conditional stacks need clean known channels; replacement inpainting is refused
    because an ODE with replacement is biased (the PC sampler with many levels is the replacement sampler).
    """
    if inpaint is not None and inpaint.replacement:
        raise ValueError("the fast sampler inpaints with clean known channels (Inpaint.known_sigma, a model trained "
                         "with per-channel noise levels); replacement inpainting needs the PC sampler")
    return sample_dpmpp_2m(score, shape, karras_sigmas(sigma_min, sigma_max, steps, rho), inpaint=inpaint,
                           **kwargs)


def fast_evaluations(steps: int = FAST_STEPS) -> int:
    """Network evaluations of :func:`sample_fast`."""
    return steps
