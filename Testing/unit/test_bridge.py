"""Brownian-bridge schedule identities and the skip-step sampler, checked against an exact x0 oracle."""

from __future__ import annotations

import math

import pytest
import torch

from radsynth.errors import CancelledError
from radsynth.processes.bridge import BrownianBridge
from radsynth.progress import CancelToken
from radsynth.samplers.bridge import sample_bridge

torch.set_num_threads(1)

T = 1000
SHAPE = (2, 1, 3, 4, 5)


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    y = torch.randn(SHAPE, generator=g, dtype=torch.float64) + 2.0  # source clearly different from the target
    return x0, y


def _oracle(x0: torch.Tensor, calls: list | None = None):
    """Exact predictor: predict_x0(x, x - x0) == x0. Optionally records (t, x) of every call."""
    def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
        assert isinstance(t, int)
        if calls is not None:
            calls.append((t, x.clone()))
        return x - x0
    return denoise


def _tt(t: int) -> torch.Tensor:
    return torch.full((SHAPE[0],), t, dtype=torch.long)


# -- schedule -------------------------------------------------------------------------------------------------------
def test_q_sample_end_points_without_noise():
    b = BrownianBridge()
    x0, y = _pair()
    zero = torch.zeros_like(x0)
    m_min, m_max = float(b.m[0]), float(b.m[-1])
    assert m_min == pytest.approx(0.001) and m_max == pytest.approx(0.999)
    x_start = b.q_sample(x0, y, _tt(0), zero)
    x_end = b.q_sample(x0, y, _tt(T - 1), zero)
    assert torch.all((x_start - x0).abs() <= m_min * (y - x0).abs() + 1e-12)
    assert torch.all((x_end - y).abs() <= (1 - m_max) * (y - x0).abs() + 1e-12)
    # and not trivially: the end points are not swapped
    assert (x_start - y).abs().min() > 0.1 * (y - x0).abs().min()
    # noise is scaled by sqrt(delta_t): at the ends it is tiny, mid-way it is large
    one = torch.ones_like(x0)
    mid = b.q_sample(x0, y, _tt(T // 2), one) - b.q_sample(x0, y, _tt(T // 2), zero)
    assert torch.allclose(mid, torch.full_like(mid, math.sqrt(float(b.delta[T // 2]))))


def test_delta_shape():
    b = BrownianBridge()
    d = b.delta
    assert d.shape == (T,)
    assert torch.all(d > 0)
    assert abs(int(torch.argmax(d)) - T / 2) <= 1
    assert float(d.max()) == pytest.approx(0.5, abs=1e-5)  # 2 s (m - m^2) at m = 1/2, s = 1
    assert torch.allclose(d, d.flip(0), atol=1e-12)
    assert torch.all(torch.diff(d[: T // 2]) > 0) and torch.all(torch.diff(d[T // 2:]) < 0)
    assert float(d[0]) == pytest.approx(2 * (0.001 - 0.001 ** 2))
    assert float(BrownianBridge(max_var=2.0).delta.max()) == pytest.approx(1.0, abs=1e-5)


def test_predict_x0_inverts_target():
    b = BrownianBridge()
    x0, y = _pair(1)
    g = torch.Generator().manual_seed(3)
    eps = torch.randn(SHAPE, generator=g, dtype=torch.float64)
    t = torch.tensor([7, 912])
    x_t = b.q_sample(x0, y, t, eps)
    pred = b.target(x0, y, t, eps)
    assert torch.allclose(b.predict_x0(x_t, pred), x0, atol=1e-12)
    # the per-element timestep matters: swapping t gives a different x_t
    assert not torch.allclose(b.q_sample(x0, y, t.flip(0), eps), x_t, atol=1e-3)


@pytest.mark.parametrize("n", [2, 10, 20, 200, 1000])
def test_step_list(n):
    steps = BrownianBridge().step_list(n)
    assert len(steps) == n
    assert steps[0] == T - 1 and steps[-1] == 0
    assert all(a > b for a, b in zip(steps, steps[1:]))
    assert all(isinstance(s, int) for s in steps)


@pytest.mark.parametrize("n", [0, 1, -5, T + 1])
def test_step_list_invalid(n):
    with pytest.raises(ValueError):
        BrownianBridge().step_list(n)


# -- sampler --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [T, 10, 20])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampler_with_oracle_returns_x0(steps, eta):
    b = BrownianBridge()
    x0, y = _pair(2)
    calls: list = []
    g = torch.Generator().manual_seed(0)
    out = sample_bridge(_oracle(x0, calls), y, b, steps, eta=eta, generator=g)
    assert torch.allclose(out, x0, atol=1e-9)
    assert [t for t, _ in calls] == b.step_list(steps)
    assert torch.equal(calls[0][1], y)  # the chain starts at the source


@pytest.mark.parametrize("steps", [10, 37])
def test_eta0_keeps_forward_marginal(steps):
    b = BrownianBridge()
    x0, y = _pair(4)
    m_T, d_T = b.m[-1].item(), b.delta[-1].item()
    eps_star = (1 - m_T) * (y - x0) / math.sqrt(d_T)  # implied noise of x_T = y
    calls: list = []
    sample_bridge(_oracle(x0, calls), y, b, steps, eta=0.0)
    assert len(calls) == steps
    for t, x in calls:
        expected = b.q_sample(x0, y, _tt(t), eps_star)
        assert torch.allclose(x, expected, atol=1e-9), f"state at t={t} left the forward marginal"
    # the intermediate states really move from y towards x0
    assert not torch.allclose(calls[steps // 2][1], y, atol=1e-2)


def test_eta1_is_stochastic_but_seeded():
    b = BrownianBridge()
    x0, y = _pair(5)

    def run(seed):
        calls: list = []
        out = sample_bridge(_oracle(x0, calls), y, b, 10, eta=1.0, generator=torch.Generator().manual_seed(seed))
        return out, calls

    out_a, a = run(11)
    out_b, b_ = run(12)
    out_c, c = run(11)
    for out in (out_a, out_b, out_c):
        assert torch.allclose(out, x0, atol=1e-9)
    assert torch.equal(a[0][1], b_[0][1])  # both start at y
    assert not torch.allclose(a[1][1], b_[1][1], atol=1e-3)
    assert not torch.allclose(a[5][1], b_[5][1], atol=1e-3)
    for (ta, xa), (tc, xc) in zip(a, c):
        assert ta == tc and torch.equal(xa, xc)
    # eta=1 differs from the deterministic chain
    det: list = []
    sample_bridge(_oracle(x0, det), y, b, 10, eta=0.0)
    assert not torch.allclose(a[1][1], det[1][1], atol=1e-3)


def test_eta1_keeps_marginal_variance():
    """Start from y chosen so that the implied noise at T is standard normal; with the oracle every later state
    must have residual (x_t - mean_t) / sqrt(delta_t) ~ N(0, 1) whatever part of it is fresh noise."""
    b = BrownianBridge()
    g = torch.Generator().manual_seed(8)
    eps = torch.randn((1, 20000), generator=g, dtype=torch.float64)
    x0 = torch.zeros_like(eps)
    m_T, d_T = b.m[-1].item(), b.delta[-1].item()
    y = math.sqrt(d_T) / (1 - m_T) * eps
    calls: list = []
    sample_bridge(_oracle(x0, calls), y, b, 10, eta=1.0, generator=torch.Generator().manual_seed(9))
    for t, x in calls:
        m, d = b.m[t].item(), b.delta[t].item()
        r = (x - (1 - m) * x0 - m * y) / math.sqrt(d)
        assert abs(r.mean().item()) < 0.03 and abs(r.std().item() - 1.0) < 0.03, f"t={t}: std {r.std():.3f}"
    # and fresh noise was mixed in: the residual is no longer the starting noise
    t, x = calls[5]
    r = (x - b.m[t].item() * y) / math.sqrt(b.delta[t].item())
    assert torch.corrcoef(torch.cat([r, eps]))[0, 1] < 0.9


def test_cancel_inside_third_call():
    b = BrownianBridge()
    x0, y = _pair(6)
    token = CancelToken()
    calls = []
    fractions = []

    def denoise(x, t):
        calls.append(t)
        if len(calls) == 3:
            token.cancel()
        return x - x0

    with pytest.raises(CancelledError):
        sample_bridge(denoise, y, b, 10, progress=lambda f, s: fractions.append(f), cancel=token)
    assert len(calls) == 3
    assert fractions == pytest.approx([0.1, 0.2, 0.3])


def test_progress_fractions():
    b = BrownianBridge()
    x0, y = _pair(7)
    seen = []
    sample_bridge(_oracle(x0), y, b, 20, progress=lambda f, s: seen.append((f, s)), cancel=CancelToken())
    fr = [f for f, _ in seen]
    assert len(fr) == 20
    assert all(a < c for a, c in zip(fr, fr[1:]))
    assert fr[0] > 0 and fr[-1] == 1.0
    assert all(isinstance(s, str) for _, s in seen)
