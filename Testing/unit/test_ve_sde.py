"""VE-SDE schedule, card reading, perturbation and the denoising score-matching loss, checked on a Gaussian."""

from __future__ import annotations

import math

import pytest
import torch

from radsynth.errors import ModelError
from radsynth.processes.ve_sde import VESDE, GaussianScore, dsm_loss, sample_training_sigmas

torch.set_num_threads(1)
torch.set_flush_denormal(True)

THESIS_12BIT = {"sde": {"type": "ve", "sigma_min": 0.001, "sigma_max": 68.0}}


def _gaussian(k: int = 2) -> GaussianScore:
    mean = torch.linspace(-0.3, 0.4, k)
    a = torch.tensor([[0.5, 0.0, 0.0], [0.4, 0.3, 0.0], [0.1, 0.2, 0.25]], dtype=torch.float64)[:k, :k]
    return GaussianScore(mean, a @ a.T + 0.01 * torch.eye(k, dtype=torch.float64))


# -- schedule ---------------------------------------------------------------------------------------------------
def test_sigma_is_geometric_between_the_card_values():
    sde = VESDE.from_card(THESIS_12BIT)
    assert float(sde.sigma(0.0)) == pytest.approx(0.001)
    assert float(sde.sigma(1.0)) == pytest.approx(68.0)
    assert float(sde.sigma(0.5)) == pytest.approx(math.sqrt(0.001 * 68.0))
    t = torch.rand(50, dtype=torch.float64)
    assert torch.allclose(sde.time(sde.sigma(t)), t)
    levels = sde.discrete_sigmas(1000)
    assert float(levels[0]) == pytest.approx(68.0) and float(levels[-1]) == pytest.approx(0.001)
    ratios = levels[:-1] / levels[1:]
    assert torch.allclose(ratios, ratios[0].expand_as(ratios))          # constant ratio: geometric
    assert float(ratios[0]) > 1.0                                          # descending


def test_diffusion_is_the_derivative_of_the_variance():
    sde = VESDE(0.01, 50.0)
    t, h = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64), 1e-6
    d_var = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    assert torch.allclose(sde.diffusion(t) ** 2, d_var, rtol=1e-6)


def test_perturbation_adds_sigma_times_noise_per_sample():
    x0 = torch.randn(3, 2, 4, 4)
    z = torch.randn(3, 2, 4, 4)
    sigma = torch.tensor([0.5, 2.0, 10.0])
    x = VESDE.perturb(x0, sigma, z)
    for b in range(3):
        assert torch.allclose(x[b], x0[b] + sigma[b] * z[b])


def test_training_noise_levels_are_log_uniform_over_the_range():
    sde = VESDE(0.001, 68.0)
    sigma = sde.sample_sigma(20000, torch.Generator().manual_seed(0))
    assert float(sigma.min()) >= 0.001 * 0.999 and float(sigma.max()) <= 68.0 * 1.001
    mid = 0.5 * (math.log(0.001) + math.log(68.0))
    assert float(sigma.log().mean()) == pytest.approx(mid, abs=0.1)      # log σ uniform: mean at the midpoint


@pytest.mark.parametrize("card, message", [
    ({}, "noise range"),
    ({"sde": {"sigma_min": 0.001}}, "noise range"),
    ({"sde": {"sigma_min": 1.0, "sigma_max": 0.5}}, "0 < sigma_min < sigma_max"),
    ({"sde": {"sigma_min": 0.0, "sigma_max": 68}}, "0 < sigma_min < sigma_max"),
    ({"sde": {"sigma_min": "a", "sigma_max": 68}}, "not a pair of numbers"),
    ({"sde": {"type": "vp", "sigma_min": 0.1, "sigma_max": 20}}, "variance-exploding"),
])
def test_bad_cards_are_refused_by_name(card, message):
    with pytest.raises(ModelError, match=message):
        VESDE.from_card(card)


def test_card_round_trip_and_flat_dict():
    sde = VESDE.from_card({"sigma_min": 0.01, "sigma_max": 1348})
    assert VESDE.from_card({"sde": sde.to_card()}).sigma_max == 1348.0


# -- the Gaussian oracle -----------------------------------------------------------------------------------------
def test_gaussian_score_is_the_gradient_of_the_perturbed_log_density():
    g = _gaussian(3)
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    sigma = torch.tensor([0.01, 0.3, 1.0, 7.0], dtype=torch.float64)
    cov = g.cov + sigma.view(-1, 1, 1) ** 2 * torch.eye(3, dtype=torch.float64)
    dist = torch.distributions.MultivariateNormal(g.mean, covariance_matrix=cov.view(4, 1, 1, 3, 3))
    logp = dist.log_prob(x.permute(0, 2, 3, 1)).sum()
    (grad,) = torch.autograd.grad(logp, x)
    assert torch.allclose(g(x.detach(), sigma), grad, atol=1e-10)


def test_gaussian_conditional_matches_hand_values():
    g = GaussianScore(torch.tensor([1.0, -1.0]), torch.tensor([[4.0, 1.2], [1.2, 1.0]]))
    mean, cov = g.conditional([0], torch.tensor([3.0]))
    assert float(mean[0]) == pytest.approx(-1.0 + 1.2 / 4.0 * 2.0)
    assert float(cov[0, 0]) == pytest.approx(1.0 - 1.2 ** 2 / 4.0)


# -- the loss ----------------------------------------------------------------------------------------------------
def test_dsm_loss_of_the_true_score_equals_its_closed_form():
    """E (σ s + z)² per entry at fixed σ is tr(Σ (Σ + σ² I)⁻¹) / K for the exact score."""
    g = _gaussian(2)
    gen = torch.Generator().manual_seed(1)
    x0 = g.sample((64, 2, 16, 16), gen)
    eye = torch.eye(2, dtype=torch.float64)
    for s in (0.01, 0.2, 1.0, 20.0):
        sigma = torch.full((64,), s, dtype=torch.float64)
        loss = float(dsm_loss(g, x0, VESDE(0.001, 68), gen, sigma=sigma))
        expected = float(torch.trace(g.cov @ torch.linalg.inv(g.cov + s ** 2 * eye))) / 2
        assert loss == pytest.approx(expected, rel=0.04, abs=2e-5), s


def test_dsm_loss_is_minimised_by_the_true_score():
    """Over score_a = a·s_true + b (common noise draws), the loss is a quadratic with its minimum at a=1, b=0;
    a score that ignores the data covariance (the standard-normal one) is clearly worse."""
    g = _gaussian(3)
    sde = VESDE(0.001, 68.0)
    gen = torch.Generator().manual_seed(2)
    x0 = g.sample((128, 3, 8, 8), gen)
    sigma = sde.sample_sigma(128, gen).double()
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)

    def loss(score) -> float:
        return float(dsm_loss(score, x0, sde, sigma=sigma, noise=noise))

    true = loss(g)
    scales = torch.linspace(0.8, 1.2, 9, dtype=torch.float64)
    values = torch.tensor([loss(lambda x, s, a=float(a): a * g(x, s)) for a in scales], dtype=torch.float64)
    c2, c1, _ = torch.linalg.lstsq(torch.stack([scales ** 2, scales, torch.ones_like(scales)], 1),
                                   values[:, None]).solution[:, 0]
    assert c2 > 0 and float(-c1 / (2 * c2)) == pytest.approx(1.0, abs=0.02)
    for b in (-0.05, 0.05):
        # a constant offset in the score costs σ²b² per entry on average: always worse than the true score
        assert loss(lambda x, s, b=b: g(x, s) + b) > true
    eye = torch.eye(3, dtype=torch.float64)
    naive = GaussianScore(torch.zeros(3), eye)       # data assumed N(0, I)
    assert loss(naive) > true + 0.01
    assert loss(lambda x, s: -x / s.view(-1, 1, 1, 1) ** 2) > true   # the score of pure noise


# -- per-channel levels (clean known channels) -------------------------------------------------------------------
def test_training_levels_draw_ascii_patterns_with_clean_known_channels():
    sde = VESDE(0.001, 68.0)
    sigmas, generated = sample_training_sigmas(sde, 4000, 3, conditional=0.5,
                                               generator=torch.Generator().manual_seed(3))
    assert sigmas.shape == (4000, 3) and generated.shape == (4000, 3)
    assert torch.allclose(sigmas[~generated], torch.tensor(0.001))
    patterns = {tuple(row.tolist()) for row in (~generated)}
    # nothing known (unconditional), or a block at either end: the slices already there, or K = 3's single seed
    assert patterns == {(False, False, False), (True, False, False), (True, True, False), (False, False, True),
                        (False, True, True)}
    conditional = (~generated).any(1).float().mean()
    assert float(conditional) == pytest.approx(0.5, abs=0.03)
    for row_s, row_g in zip(sigmas[:50], generated[:50]):               # generated channels share one level
        assert len(set(row_s[row_g].tolist())) == 1
    never = sample_training_sigmas(sde, 100, 2, conditional=0.0)[1]
    assert bool(never.all())


def test_dsm_loss_with_clean_channels_is_minimised_by_the_conditional_score():
    """With known channels clean, the loss on the generated channel prefers the score that knows they are clean
    (per-channel levels) to the one that treats every channel as equally noisy (what replacement assumes)."""
    g = _gaussian(2)
    sde = VESDE(0.001, 68.0)
    gen = torch.Generator().manual_seed(4)
    x0 = g.sample((256, 2, 8, 8), gen)
    sigmas, generated = sample_training_sigmas(sde, 256, 2, conditional=1.0, generator=gen)
    noise = torch.randn(x0.shape, generator=gen, dtype=torch.float64)

    def loss(score) -> float:
        return float(dsm_loss(score, x0, sde, sigma=sigmas.double(), noise=noise, generated=generated))

    exact = loss(g)
    uniform = loss(lambda x, s: g(x, s.max(dim=1).values))
    assert exact < uniform - 0.01
    scaled = [loss(lambda x, s, a=a: a * g(x, s)) for a in (0.9, 1.1)]
    assert min(scaled) > exact
