"""Variance-exploding SDE (Song et al. 2021, the NCSN family) as used by ASCII slice generation.

Forward process: x_σ = x_0 + σ z with σ(t) = σ_min (σ_max / σ_min)^t, t ∈ [0, 1]; there is no drift, so a sample
at any noise level is the clean data plus Gaussian noise of that standard deviation. The network is trained by
denoising score matching with the σ² weighting of score_sde's non-likelihood loss:
E_t E_z || σ s_θ(x_0 + σ z, σ) + z ||², which makes every noise level contribute on the same scale.

σ_min / σ_max come from the model card: the thesis used 0.001 / 68 for the 12-bit range (−1024…3071 HU → [−1, 1])
and 0.01 / 1348 for a windowed range; σ_min is what sets the residual noise in the low-contrast parenchyma.

:class:`GaussianScore` is the exact score of a Gaussian across channels, perturbed to any σ: the closed-form model
the samplers and the ASCII loop are tested against.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional

import torch

from ..errors import ModelError

#: score(x, sigma) -> ∇_x log p_σ(x); sigma (B,) one level per sample, or (B, K) one per channel
ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) → (B, 1, 1, …), or per channel (B, K) → (B, K, 1, …), broadcastable against ``like``."""
    values = values.to(like.device, like.dtype)
    if values.dim() == 2:
        return values.view(*values.shape, *([1] * (like.dim() - 2)))
    return values.view(-1, *([1] * (like.dim() - 1)))


class VESDE:
    """σ(t) = σ_min (σ_max/σ_min)^t; the perturbation kernel is N(x_0, σ(t)² I)."""

    def __init__(self, sigma_min: float, sigma_max: float) -> None:
        lo, hi = float(sigma_min), float(sigma_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
            raise ModelError(f"The noise range of a VE-SDE needs 0 < sigma_min < sigma_max (got {sigma_min!r}, "
                             f"{sigma_max!r}).")
        self.sigma_min = lo
        self.sigma_max = hi
        self._log_ratio = math.log(hi / lo)

    @classmethod
    def from_card(cls, card: Mapping[str, Any]) -> "VESDE":
        """From ``card["sde"]`` (or a flat dict) with ``sigma_min`` and ``sigma_max``; a clear error otherwise."""
        sde = card.get("sde", card) if isinstance(card, Mapping) else None
        if not isinstance(sde, Mapping) or "sigma_min" not in sde or "sigma_max" not in sde:
            raise ModelError("The model card does not give the noise range (sde.sigma_min and sde.sigma_max).")
        kind = sde.get("type", "ve")
        if kind != "ve":
            raise ModelError(f"The model card describes a {kind!r} SDE; this sampler needs a variance-exploding "
                             "('ve') one.")
        try:
            return cls(float(sde["sigma_min"]), float(sde["sigma_max"]))
        except (TypeError, ValueError):
            raise ModelError(f"The model card's noise range is not a pair of numbers ({sde['sigma_min']!r}, "
                             f"{sde['sigma_max']!r}).") from None

    def to_card(self) -> dict[str, Any]:
        return {"type": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}

    # -- schedule ---------------------------------------------------------------------------------------------------
    def sigma(self, t: torch.Tensor | float) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=torch.float64)
        return self.sigma_min * torch.exp(t * self._log_ratio)

    def time(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """The t with σ(t) = sigma (the inverse of :meth:`sigma`)."""
        sigma = torch.as_tensor(sigma)
        return torch.log(sigma / self.sigma_min) / self._log_ratio

    def diffusion(self, t: torch.Tensor | float) -> torch.Tensor:
        """g(t) = sqrt(dσ²/dt) = σ(t) sqrt(2 log(σ_max/σ_min))."""
        return self.sigma(t) * math.sqrt(2.0 * self._log_ratio)

    def discrete_sigmas(self, steps: int) -> torch.Tensor:
        """``steps`` noise levels from σ_max down to σ_min, evenly spaced in log σ (float64, descending)."""
        if steps < 2:
            raise ValueError(f"a noise schedule needs at least 2 levels, got {steps}")
        return torch.exp(torch.linspace(math.log(self.sigma_max), math.log(self.sigma_min), steps,
                                        dtype=torch.float64))

    # -- forward process --------------------------------------------------------------------------------------------
    @staticmethod
    def perturb(x0: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_σ = x_0 + σ z, ``sigma`` one per sample (B,) or per sample and channel (B, K)."""
        return x0 + _per_sample(sigma, x0) * noise

    def sample_sigma(self, batch: int, generator: Optional[torch.Generator] = None,
                     eps: float = 1e-5) -> torch.Tensor:
        """σ(t) for t ~ U[eps, 1]: log-uniform noise levels over the card's range (float32, CPU)."""
        t = torch.rand(batch, generator=generator, dtype=torch.float64) * (1.0 - eps) + eps
        return self.sigma(t).float()

    def prior(self, shape: tuple[int, ...], generator: Optional[torch.Generator] = None,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x ~ N(0, σ_max² I): the start of every reverse process (the data's own scale is negligible at σ_max)."""
        return (torch.randn(shape, generator=generator, dtype=dtype) * self.sigma_max).to(device)


def sample_training_sigmas(sde: VESDE, batch: int, channels: int, conditional: float = 0.5,
                           generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel training levels (B, K) and the generated channels (B, K) bool.

    With probability 1 − ``conditional`` every channel shares one log-uniform level (the thesis's unconditional
    model). Otherwise an ASCII pattern is drawn — a block of 1 … K−1 channels at one end of the stack (the slices
    already there when growing up or down, or the single seed of K = 3's first step) — and those channels are
    clean (σ_min) while the rest share the level: the network then learns the conditional score the fast sampler
    needs. Clean channels are left out of the loss (:func:`dsm_loss` ``generated``): they are never sampled.
    """
    if not 0.0 <= conditional <= 1.0:
        raise ValueError(f"conditional must be in [0, 1], got {conditional}")
    level = sde.sample_sigma(batch, generator)
    sigmas = level[:, None].repeat(1, channels)
    generated = torch.ones(batch, channels, dtype=torch.bool)
    if channels < 2 or conditional == 0.0:
        return sigmas, generated
    patterns = [list(range(n)) for n in range(1, channels)] + [list(range(channels - n, channels))
                                                                for n in range(1, channels)]
    chosen = torch.rand(batch, generator=generator) < conditional
    which = torch.randint(len(patterns), (batch,), generator=generator)
    for b in torch.nonzero(chosen).flatten().tolist():
        known = patterns[int(which[b])]
        sigmas[b, known] = sde.sigma_min
        generated[b, known] = False
    return sigmas, generated


def dsm_loss(score: ScoreFn, x0: torch.Tensor, sde: VESDE, generator: Optional[torch.Generator] = None,
             sigma: Optional[torch.Tensor] = None, noise: Optional[torch.Tensor] = None,
             generated: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Denoising score matching with λ(σ) = σ²: mean over batch and pixels of (σ s(x_0 + σ z, σ) + z)².

    The target of s is ∇ log N(x_σ; x_0, σ²) = −z/σ, so the loss is λ(σ) ||s − (−z/σ)||² with λ = σ²; its minimiser
    over all functions is the score of the σ-perturbed data marginal. ``sigma`` (B,) or per channel (B, K) and
    ``noise`` may be given to evaluate the loss on fixed draws (common random numbers when comparing models);
    ``generated`` (B, K) bool restricts the mean to those channels.
    """
    if sigma is None:
        sigma = sde.sample_sigma(x0.shape[0], generator).to(x0.device)
    if noise is None:
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype).to(x0.device)
    sigma = sigma.to(x0.device)
    x = VESDE.perturb(x0, sigma, noise)
    residual = (_per_sample(sigma, x0) * score(x, sigma) + noise).pow(2)
    if generated is None:
        return residual.mean()
    weight = _per_sample(generated.to(x0.dtype), x0).expand_as(residual)
    return (residual * weight).sum() / weight.sum().clamp_min(1.0)


class GaussianScore:
    """Exact score of N(μ, Σ) over the K channels of each pixel (pixels independent), perturbed to σ.

    s(x, σ) = −(Σ + diag(σ²))⁻¹ (x − μ), σ one level per sample or one per channel. Used as the "perfect network"
    in tests: with it a correct sampler must reproduce the Gaussian, and a correct inpainter its conditionals.
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float64)
        self.cov = torch.as_tensor(cov, dtype=torch.float64)
        k = self.mean.numel()
        if self.cov.shape != (k, k):
            raise ValueError(f"covariance must be {k}x{k}, got {tuple(self.cov.shape)}")
        torch.linalg.cholesky(self.cov)   # raises unless positive definite
        self.calls = 0

    @property
    def channels(self) -> int:
        return self.mean.numel()

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """``sigma``: one level per sample (B,) or one per sample and channel (B, K)."""
        self.calls += 1
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        if sigma.dim() <= 1:
            sigma = sigma.reshape(-1, 1).expand(x.shape[0], self.channels)
        precision = torch.linalg.inv(self.cov + torch.diag_embed(sigma ** 2))       # (B, K, K)
        centred = x.double() - self.mean.view(1, -1, *([1] * (x.dim() - 2)))
        return -torch.einsum("bij,bj...->bi...", precision, centred).to(x.dtype)

    def sample(self, shape: tuple[int, ...], generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Clean samples of shape (B, K, *spatial)."""
        chol = torch.linalg.cholesky(self.cov)
        z = torch.randn((shape[0], self.channels, *shape[2:]), generator=generator, dtype=torch.float64)
        return (torch.einsum("ij,bj...->bi...", chol, z)
                + self.mean.view(1, -1, *([1] * (len(shape) - 2))))

    def conditional(self, known: list[int], values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of the other channels given ``values`` (len(known),) on the ``known`` channels."""
        unknown = [c for c in range(self.channels) if c not in known]
        s_uk = self.cov[unknown][:, known]
        s_kk = self.cov[known][:, known]
        gain = s_uk @ torch.linalg.inv(s_kk)
        mean = self.mean[unknown] + gain @ (torch.as_tensor(values, dtype=torch.float64) - self.mean[known])
        cov = self.cov[unknown][:, unknown] - gain @ s_uk.T
        return mean, cov
