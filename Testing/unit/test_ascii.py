"""ASCII slice growth on an exact Gaussian score (conditional statistics of every generated slice, both directions,
K = 2 and 3, the joint first step), cancel/partial, progress, calibration hook, bad input; the score network's
noise conditioning and one short training run.

The reference: an ideal ASCII chain samples each new slice from the Gaussian conditional given the slices it is
conditioned on; its mean and variance per slice are propagated exactly below (float64) and compared with 8192
independent pixels per run. Means must be within 0.08 of the slice's standard deviation and variances within
10 %: the per-step sampler tolerances of test_score_samplers.py plus room for propagation over 4 slices.
"""

from __future__ import annotations

import pytest
import torch

from radsynth.errors import RadSynthError
from radsynth.nets.score_unet import ScoreUNet
from radsynth.pipelines.generate.ascii import Grown, StackSampler, fast_sampler, grow, pc_sampler
from radsynth.processes.ve_sde import VESDE, GaussianScore, dsm_loss, sample_training_sigmas
from radsynth.progress import CancelToken

torch.set_num_threads(1)
torch.set_flush_denormal(True)

SDE = VESDE(0.001, 68.0)
B, H, W = 8, 32, 32
MEAN_TOL, VAR_TOL = 0.08, 0.10


def window_model(k: int) -> GaussianScore:
    """K-slice windows with different means per position and unequal neighbour correlations, so a loop that puts
    the condition in the wrong channels, or grows down as if up, gets the wrong statistics."""
    if k == 2:
        cov = torch.tensor([[0.25, 0.21], [0.21, 0.23]], dtype=torch.float64)
        return GaussianScore(torch.tensor([0.10, -0.05]), cov)
    cov = torch.tensor([[0.25, 0.21, 0.17], [0.21, 0.24, 0.20], [0.17, 0.20, 0.23]], dtype=torch.float64)
    return GaussianScore(torch.tensor([0.10, -0.05, 0.02]), cov)


def ideal_chain(g: GaussianScore, seed: list[float], count: int, direction: int) -> tuple[list[float], list[float]]:
    """Exact mean and variance of the first ``count`` slices an ideal ASCII grows from fixed seed values.

    Slices are kept in order from the seed outwards; each step conditions on the K−1 slices nearest the front (or on
    all there are, generating the missing ones jointly) with the Gaussian's conditional in window coordinates.
    """
    k = g.channels
    order = list(seed) if direction < 0 else list(seed[::-1])     # nearest the front first
    mean = torch.tensor(order, dtype=torch.float64)
    cov = torch.zeros(len(order), len(order), dtype=torch.float64)
    made = 0
    while made < count:
        ctx = list(range(min(k - 1, len(mean))))                     # indices into the running list
        n_new = k - len(ctx)
        if direction > 0:
            known_ch, new_ch = list(range(len(ctx))), list(range(len(ctx), k))
            ctx_in_channel_order = ctx[::-1]
        else:
            known_ch, new_ch = list(range(n_new, k)), list(range(n_new))
            ctx_in_channel_order = ctx
        s_kk = g.cov[known_ch][:, known_ch]
        s_uk = g.cov[new_ch][:, known_ch]
        gain = s_uk @ torch.linalg.inv(s_kk)
        cond = g.cov[new_ch][:, new_ch] - gain @ s_uk.T
        m_ctx = mean[ctx_in_channel_order]
        new_mean = g.mean[new_ch] + gain @ (m_ctx - g.mean[known_ch])
        cross = gain @ cov[ctx_in_channel_order]                     # Cov(new, everything so far)
        new_cov = gain @ cov[ctx_in_channel_order][:, ctx_in_channel_order] @ gain.T + cond
        # new channels ordered from the front's old edge outwards
        outward = list(range(n_new)) if direction > 0 else list(range(n_new))[::-1]
        new_mean, cross = new_mean[outward], cross[outward]
        new_cov = new_cov[outward][:, outward]
        mean = torch.cat([new_mean.flip(0), mean])
        cov = torch.cat([torch.cat([new_cov.flip(0).flip(1), cross.flip(0)], 1),
                         torch.cat([cross.flip(0).T, cov], 1)], 0)
        made += n_new
    # running list is nearest-front first: generated slices are its first entries, newest first
    gen_mean = mean[:made].flip(0)[:count]
    gen_var = cov.diagonal()[:made].flip(0)[:count]
    return gen_mean.tolist(), gen_var.tolist()


def _seed(values: list[float]) -> torch.Tensor:
    return torch.stack([torch.full((B, H, W), v) for v in values], 1)


def _check(grown: Grown, g: GaussianScore, seed: list[float], above: int, below: int) -> None:
    s = grown.seed_start
    assert torch.equal(grown.slices[:, s:s + len(seed)], _seed(seed))           # the seed, bit for bit
    for direction, count in ((+1, above), (-1, below)):
        if not count:
            continue
        mean, var = ideal_chain(g, seed, count, direction)
        for n in range(count):
            idx = s + len(seed) + n if direction > 0 else s - 1 - n
            x = grown.slices[:, idx].double()
            sd = var[n] ** 0.5
            assert abs(float(x.mean()) - mean[n]) / sd < MEAN_TOL, (direction, n, float(x.mean()), mean[n])
            assert abs(float(x.var()) / var[n] - 1.0) < VAR_TOL, (direction, n, float(x.var()), var[n])


def _fast(g, seed=0):
    return fast_sampler(g, SDE, generator=torch.Generator().manual_seed(seed))


# -- conditional statistics -------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, seed, above, below", [
    (2, [0.6], 4, 0),
    (2, [0.6], 0, 4),
    (2, [0.5, 0.6], 3, 3),
    (3, [0.6], 3, 3),          # the joint first step on both sides
    (3, [0.4, 0.6], 3, 0),     # two real seed slices: every step conditioned on 2
])
def test_ascii_reproduces_the_conditional_chain_with_the_fast_sampler(k, seed, above, below):
    g = window_model(k)
    grown = grow(_fast(g), _seed(seed), k, above=above, below=below)
    assert not grown.partial and grown.below == below and grown.above == above
    _check(grown, g, seed, above, below)


def test_ascii_reproduces_the_conditional_chain_with_the_pc_sampler():
    """The thesis's path: replacement inpainting, PC at 1000 levels, 1999 evaluations per slice."""
    g = window_model(2)
    sampler = pc_sampler(g, SDE, generator=torch.Generator().manual_seed(1))
    grown = grow(sampler, _seed([0.6]), 2, above=2, below=1)
    assert grown.evaluations == 3 * 1999
    _check(grown, g, [0.6], 2, 1)


def test_the_ideal_chain_reference_is_itself_right():
    """The propagation above against plain Monte Carlo of the Gaussian conditionals (no sampler involved)."""
    g = window_model(3)
    gen = torch.Generator().manual_seed(2)
    n = 200000
    seed = 0.6
    m, c = g.conditional([0], torch.tensor([seed]))
    pair = m + torch.randn(n, 2, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(c).T
    m3 = g.mean[2] + (g.cov[2, :2] @ torch.linalg.inv(g.cov[:2, :2])) @ (pair - g.mean[:2]).T
    c3 = g.cov[2, 2] - g.cov[2, :2] @ torch.linalg.inv(g.cov[:2, :2]) @ g.cov[:2, 2]
    third = m3 + c3.sqrt() * torch.randn(n, generator=gen, dtype=torch.float64)
    mean, var = ideal_chain(g, [seed], 3, +1)
    emp = torch.stack([pair[:, 0], pair[:, 1], third])
    assert torch.allclose(emp.mean(1), torch.tensor(mean, dtype=torch.float64), atol=0.005)
    assert torch.allclose(emp.var(1), torch.tensor(var, dtype=torch.float64), rtol=0.02)


def test_unconditional_start_grows_up_from_an_air_slice():
    g = window_model(2)
    positions = []
    grown = grow(_fast(g), None, 2, above=3, shape=(B, H, W), air=-1.0,
                 on_slice=lambda p, s: positions.append(p))
    assert grown.seed_count == 0 and grown.slices.shape == (B, 3, H, W)
    assert positions == [0, 1, 2]
    mean, var = ideal_chain(g, [-1.0], 3, +1)
    for n in range(3):
        x = grown.slices[:, n].double()
        assert abs(float(x.mean()) - mean[n]) / var[n] ** 0.5 < MEAN_TOL


# -- bookkeeping -----------------------------------------------------------------------------------------------
def test_positions_order_and_alternation():
    g = window_model(2)
    events = []
    grown = grow(_fast(g), _seed([0.1, 0.2]), 2, above=2, below=3, on_slice=lambda p, s: events.append(p))
    assert events == [2, -1, 3, -2, -3]                 # alternating, outwards, seed at 0..1
    assert grown.slices.shape[1] == 7 and grown.seed_start == 3 and grown.above == 2 and grown.below == 3
    assert grown.generated.tolist() == [True, True, True, False, False, True, True]
    assert grown.evaluations == 5 * 39


def test_joint_first_step_keeps_only_what_was_asked():
    g = window_model(3)
    grown = grow(_fast(g), _seed([0.6]), 3, above=1)
    assert grown.slices.shape[1] == 2 and grown.above == 1


def test_calibrated_slice_is_kept_and_conditions_the_next_step():
    g = window_model(2)
    calls = []
    conditions = []
    inner = _fast(g)

    def spy_run(shape, inpaint, progress, cancel):
        conditions.append(inpaint.known.clone())
        return inner.run(shape, inpaint, progress, cancel)

    def calibrate(new, previous):
        calls.append((new.clone(), previous.clone()))
        return new + 0.25

    sampler = StackSampler("spy", inner.evaluations, inner.known_sigma, spy_run)
    grown = grow(sampler, _seed([0.6]), 2, above=2, calibrate=calibrate)
    assert torch.equal(calls[0][1], torch.full((B, H, W), 0.6))               # first neighbour: the seed
    assert torch.equal(calls[1][1], calls[0][0] + 0.25)                       # then the calibrated slice
    assert torch.equal(conditions[1][:, 0], calls[0][0] + 0.25)               # which conditions step 2
    assert torch.equal(grown.slices[:, 1], calls[0][0] + 0.25)


def test_cancel_mid_slice_returns_the_finished_slices_marked_partial():
    g = window_model(2)
    full = grow(_fast(g, 5), _seed([0.6]), 2, above=4)
    token = CancelToken()
    calls_at_cancel = []

    def progress(fraction, stage):
        if stage.startswith("slice 3/") and fraction > 0.6 and not token.cancelled:
            token.cancel()
            calls_at_cancel.append(g.calls)

    grown = grow(_fast(g, 5), _seed([0.6]), 2, above=4, progress=progress, cancel=token)
    assert grown.partial and grown.above == 2 and grown.requested_above == 4
    assert g.calls == calls_at_cancel[0]                                        # stopped within one step
    assert torch.equal(grown.slices, full.slices[:, :3])                       # what was done, unchanged


def test_cancel_before_start_returns_the_seed_only():
    g = window_model(2)
    token = CancelToken()
    token.cancel()
    grown = grow(_fast(g), _seed([0.6]), 2, above=2, cancel=token)
    assert grown.partial and grown.slices.shape[1] == 1 and g.calls == 0


def test_progress_is_monotone_per_slice():
    g = window_model(2)
    seen = []
    grow(_fast(g), _seed([0.6]), 2, above=2, below=1, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert {s for _, s in seen} == {"slice 1/3 (up)", "slice 2/3 (down)", "slice 3/3 (up)"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(slices=4, above=1), "2 or 3"),
    (dict(slices=2), "at least one slice"),
    (dict(slices=2, above=-1, below=2), "at least one slice"),
    (dict(slices=2, above=1, seed=torch.zeros(4, 4)), "Seed slices must be"),
    (dict(slices=2, above=1, seed=torch.full((1, 4, 4), float("nan"))), "not finite"),
    (dict(slices=2, below=1, seed=None, shape=(1, 4, 4)), "grows up"),
    (dict(slices=2, above=1, seed=None), "needs the"),
])
def test_bad_requests_are_refused_by_name(kwargs, message):
    kwargs.setdefault("seed", torch.zeros(1, 4, 4))
    with pytest.raises(RadSynthError, match=message):
        grow(_fast(window_model(2)), **kwargs)


# -- the score network -----------------------------------------------------------------------------------------
TINY = {"channels": [8, 16], "attention_levels": [False, False], "num_res_blocks": 1, "num_head_channels": 8,
        "norm_num_groups": 4}


def test_score_network_grows_a_stack_end_to_end():
    net = ScoreUNet({**TINY, "slices": 3}, SDE.sigma_min, SDE.sigma_max).eval()
    torch.nn.init.normal_(net.unet.out[-1].conv.weight, std=0.01)     # MONAI zero-initialises the output layer
    grown = grow(fast_sampler(net, SDE, steps=5, generator=torch.Generator().manual_seed(0)),
                 torch.zeros(2, 1, 16, 16), 3, above=3, below=1)
    assert grown.slices.shape == (2, 5, 16, 16) and torch.isfinite(grown.slices).all()
    assert grown.evaluations == 3 * 5                    # joint first step up (2 slices), one more up, one down


def test_score_network_noise_conditioning():
    net = ScoreUNet({**TINY, "slices": 2}, SDE.sigma_min, SDE.sigma_max).eval()
    torch.nn.init.normal_(net.unet.out[-1].conv.weight, std=0.1)
    torch.nn.init.normal_(net.unet.class_embedding.mlp[-1].weight, std=0.1)
    x = torch.randn(1, 2, 16, 16)
    with torch.no_grad():
        low, high = net(x, torch.tensor([0.01])), net(x, torch.tensor([10.0]))
        per = net(x, torch.tensor([[0.001, 10.0]]))
        same = net(x, torch.tensor([[10.0, 10.0]]))
    assert not torch.allclose(low * 0.01, high * 10.0)          # the level reaches the network
    assert torch.allclose(same, high)                           # (B, K) equal levels = (B,) level
    assert not torch.allclose(per[:, 1], high[:, 1])            # a clean neighbour changes the score
    assert torch.equal(net.noise_label(torch.tensor([0.001, 68.0])), torch.tensor([0.0, 999.0]))
    uniform = ScoreUNet({**TINY, "slices": 2, "per_channel_noise": False}, 0.001, 68.0)
    with pytest.raises(ValueError, match="per_channel_noise"):
        uniform(x, torch.tensor([[0.001, 10.0]]))


def test_score_network_learns_on_the_dsm_loss():
    """Thirty Adam steps on Gaussian 'slices' with mixed per-channel levels lower the loss from the 1.0 of the
    zero-initialised output well towards the Gaussian's own optimum."""
    torch.manual_seed(0)
    g = window_model(2)
    net = ScoreUNet({**TINY, "slices": 2}, SDE.sigma_min, SDE.sigma_max)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    data = g.sample((16, 2, 16, 16), gen).float()
    sigmas, generated = sample_training_sigmas(SDE, 16, 2, 0.5, gen)
    noise = torch.randn(data.shape, generator=gen)

    def loss_fn(model):
        with torch.no_grad():
            return dsm_loss(model, data, SDE, sigma=sigmas, noise=noise, generated=generated)

    start = float(loss_fn(net))
    for _ in range(30):
        s, gmask = sample_training_sigmas(SDE, 16, 2, 0.5, gen)
        loss = dsm_loss(net, data, SDE, gen, sigma=s, generated=gmask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = float(loss_fn(net))
    optimum = float(loss_fn(g))
    assert start == pytest.approx(1.0, abs=0.05)
    assert end < start - 0.5 * (start - optimum), (start, end, optimum)
