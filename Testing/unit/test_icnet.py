"""IC-Net: the self-supervised objective (exact), its analytic inverse, the network's start as the analytic
calibration, re-insertion into the full-range slice (pixels at or outside the window never change), the ASCII
calibrator, and that training moves the network.

Stated error (real CT, lung1, 64² slices, thesis window −150…150 HU; tissue contrast scaled about its mean and
clipped to the window as at inference; mean absolute error over pixels inside the window before and after):
μ = 0.7 / 0.8 / 1.2 / 1.3 gives 18.7 / 12.5 / 11.9 / 17.4 HU; the untrained IC-Net (the analytic calibration
against the neighbour slice) leaves 1.3 / 1.3 / 3.7 / 5.5 HU. Above μ = 1 tissue pushed out of the window is lost
to clipping, the thesis's "errors explode at μ ≥ 1.2" in milder form. Bounds: 2 HU below μ = 1, 6 HU above.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch.nn import functional as F

from radsynth.nets.icnet import (ICNet, Window, blend_weight, calibrate_hu, calibrator, icnet_loss,
                                 invert_contrast, match_moments, perturb_contrast, reinsert, sample_mu)
from radsynth.sample_data import sample_path

torch.set_num_threads(1)
torch.set_flush_denormal(True)

WINDOW = Window(-150.0, 150.0)
TINY = {"channels": [8, 16, 32], "spade_hidden": 8}


@pytest.fixture(scope="module")
def lung_slices() -> torch.Tensor:
    """All axial slices of the sample chest CT, area-averaged to 64², in HU (48, 64, 64)."""
    hu = sitk.GetArrayFromImage(sitk.ReadImage(str(sample_path("lung1", "image")))).astype(np.float32)
    return F.interpolate(torch.from_numpy(hu)[:, None], size=(64, 64), mode="area")[:, 0]


# -- the objective -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("roi", [True, False])
def test_contrast_perturbation_keeps_the_mean_and_scales_the_deviations(roi):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 16, 16, generator=gen) * 1.2 - 0.6              # tissue well inside the window
    x[:, :, :4] = -1.0                                                     # clipped air
    mu = torch.tensor([0.7, 0.9, 1.0, 1.3])
    x_hat = perturb_contrast(x, mu, roi)
    region = (x > -1) if roi else torch.ones_like(x, dtype=torch.bool)
    for b in range(4):
        r = region[b]
        dev, dev_hat = x[b][r] - x[b][r].mean(), x_hat[b][r] - x_hat[b][r].mean()
        assert float(x_hat[b][r].mean()) == pytest.approx(float(x[b][r].mean()), abs=1e-6)
        assert torch.allclose(dev_hat, dev * mu[b], atol=1e-6)
    if roi:
        assert torch.equal(x_hat[:, :, :4], x[:, :, :4])                  # clipped pixels stay clipped
    assert torch.allclose(perturb_contrast(x, torch.ones(4), roi), x, atol=1e-7)
    assert float((invert_contrast(x_hat, mu, roi) - x).abs().max()) < 1e-6    # the analytic inverse


def test_contrast_factors_are_drawn_from_the_thesis_range():
    mu = sample_mu(10000, torch.Generator().manual_seed(0))
    assert 0.7 <= float(mu.min()) < 0.71 and 1.29 < float(mu.max()) <= 1.3      # U[0.7, 1.3], not U[-0.7, 1.3]


def test_objective_is_zero_for_the_oracle_and_exact_for_the_identity():
    x = torch.rand(3, 1, 16, 16) * 1.2 - 0.6           # scaled by up to 1.3 it stays inside the window
    prev = torch.rand(3, 1, 16, 16) * 2 - 1
    mu = torch.tensor([0.8, 1.1, 1.25])
    oracle = icnet_loss(lambda cur, _p: invert_contrast(cur, mu, roi=False), x, prev, mu=mu, roi=False)
    identity = icnet_loss(lambda cur, _p: cur, x, prev, mu=mu, roi=False)
    mad = (x - x.mean((-2, -1), keepdim=True)).abs().mean((1, 2, 3))
    assert float(oracle) < 1e-6
    assert float(identity) == pytest.approx(float(((mu - 1).abs() * mad).mean()), rel=1e-5)


# -- the network -------------------------------------------------------------------------------------------------
def test_untrained_icnet_inverts_a_known_contrast_scaling_on_real_ct(lung_slices):
    net = ICNet(TINY).eval()
    cur, prev = WINDOW.to_unit(lung_slices[1:]), WINDOW.to_unit(lung_slices[:-1])
    inside = (lung_slices[1:] > WINDOW.lo) & (lung_slices[1:] < WINDOW.hi)
    scale = (WINDOW.hi - WINDOW.lo) / 2                                   # unit → HU
    for mu, bound in ((0.7, 2.0), (0.8, 2.0), (1.2, 6.0), (1.3, 6.0)):
        x_hat = perturb_contrast(cur, torch.full((len(cur),), mu)).clamp(-1, 1)
        with torch.no_grad():
            out = net(x_hat.unsqueeze(1), prev.unsqueeze(1)).squeeze(1)
        region = inside & (x_hat > -1) & (x_hat < 1)
        before = float((x_hat - cur).abs()[region].mean()) * scale
        after = float((out - cur).abs()[region].mean()) * scale
        assert before > 10.0 and after < bound, (mu, before, after)


def test_output_shape_and_the_previous_slice_reaches_the_decoder():
    torch.manual_seed(0)
    net = ICNet(TINY).eval()
    torch.nn.init.normal_(net.head.weight, std=0.5)                      # past the zero-initialised start
    cur, prev = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        a = net(cur, prev)
        b = net(cur, torch.flip(prev, dims=[-1]))
    assert a.shape == (2, 1, 32, 32)
    # same in-window spread, different layout: only the SPADE path can see the difference
    assert torch.allclose(match_moments(cur, prev), match_moments(cur, torch.flip(prev, dims=[-1])))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="two \\(B, 1, H, W\\) slices"):
        net(cur, prev[:, :, :16])


def test_training_moves_the_network_on_the_objective(lung_slices):
    """A few steps on one batch of real neighbour pairs lower that batch's loss below the analytic start: the
    correction path learns (a full demo model is trained by a script, not in a unit test)."""
    torch.manual_seed(0)
    net = ICNet(TINY)
    x = WINDOW.to_unit(F.interpolate(lung_slices[:, None], size=(32, 32), mode="area"))
    cur, prev = x[11:19], x[10:18]
    mu = torch.tensor([0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 0.75])
    with torch.no_grad():
        start = float(icnet_loss(net, cur, prev, mu=mu))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(40):
        loss = icnet_loss(net, cur, prev, mu=mu)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = float(icnet_loss(net, cur, prev, mu=mu))
    assert end < 0.9 * start, (start, end)


# -- back into the full range ------------------------------------------------------------------------------------
def test_pixels_at_or_outside_the_window_never_change():
    gen = torch.Generator().manual_seed(1)
    hu = torch.empty(2, 64, 64).uniform_(-1024, 3071, generator=gen).round()
    hu[0, :4] = WINDOW.lo                                                 # exactly on the edges
    hu[0, 4:8] = WINDOW.hi
    hu[1, :8] = torch.empty(8, 64).uniform_(-160, 160, generator=gen)    # around the window
    calibrated = torch.empty_like(hu).uniform_(-5000, 5000, generator=gen)   # an adversarial network output
    out = reinsert(hu, calibrated, WINDOW, margin=30.0)
    outside = (hu <= WINDOW.lo) | (hu >= WINDOW.hi)
    assert outside.sum() > 1000 and torch.equal(out[outside], hu[outside])
    deep = (hu >= WINDOW.lo + 30) & (hu <= WINDOW.hi - 30)
    assert deep.sum() > 100 and torch.equal(out[deep], calibrated[deep])
    ramp = ~outside & ~deep
    w = blend_weight(hu[ramp], WINDOW, 30.0)
    assert ramp.sum() > 10 and torch.all((w > 0) & (w < 1))
    assert torch.allclose(out[ramp], hu[ramp] + w * (calibrated[ramp] - hu[ramp]))


def test_blend_weight_is_continuous_at_the_window_edges():
    hu = torch.linspace(-200, 200, 4001)
    w = blend_weight(hu, WINDOW, 30.0)
    assert float(w.max()) == 1.0 and float(w[hu <= -150].max()) == 0.0 and float(w[hu >= 150].max()) == 0.0
    assert float(w.diff().abs().max()) <= 0.1 / 30.0 + 1e-6              # no step larger than the ramp's slope
    assert torch.equal(blend_weight(hu, WINDOW, 0.0), ((hu > -150) & (hu < 150)).float())


def test_full_range_calibration_changes_only_tissue_inside_the_window(lung_slices):
    net = ICNet(TINY).eval()
    cur = lung_slices[20:22]
    inside_cur = (cur > WINDOW.lo) & (cur < WINDOW.hi)
    # a generated slice whose tissue drifted; everything the window clips stays where it was
    drifted = torch.where(inside_cur, WINDOW.to_hu(perturb_contrast(WINDOW.to_unit(cur), torch.tensor([1.2, 0.8]))),
                          cur)
    out = calibrate_hu(net, drifted, lung_slices[19:21], WINDOW)
    outside = (drifted <= WINDOW.lo) | (drifted >= WINDOW.hi)
    assert outside.sum() > 1000 and torch.equal(out[outside], drifted[outside])    # lung, air, bone untouched
    inside = ~outside
    assert float((out - cur)[inside].abs().mean()) < 0.5 * float((drifted - cur)[inside].abs().mean())


def test_ascii_calibrator_works_in_the_score_models_units(lung_slices):
    net = ICNet(TINY).eval()
    model_window = Window(-1024.0, 3071.0)
    calibrate = calibrator(net, model_window)
    new, prev = model_window.to_unit(lung_slices[30:31]), model_window.to_unit(lung_slices[29:30])
    out = calibrate(new, prev)
    hu_new, hu_out = model_window.to_hu(new), model_window.to_hu(out)
    outside = (hu_new <= -150) | (hu_new >= 150)
    assert out.shape == new.shape
    assert torch.allclose(hu_out[outside], hu_new[outside], atol=1e-3)   # float round trip through HU only
