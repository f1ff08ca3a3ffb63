"""``generate slices`` pipeline on small synthetic CTs with a tiny (untrained) score network: output geometry for
every direction and both k-axis signs, seed slices copied unchanged, K = 3 seeding with real neighbours, the
unconditional start, resampling between the seed's and the model's in-plane grids, every refusal (2D, non-axial,
seed outside, another HU range, memory, K), cancel → partial, and progress with an ETA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radsynth.errors import CancelledError, InvalidImageError, InvalidOptionError, ModelError
from radsynth.geometry import rotation
from radsynth.nets.icnet import ICNet
from radsynth.nets.score_unet import ScoreUNet
from radsynth.pipelines.generate import slices as sl
from radsynth.pipelines.generate.slices import MemoryLimitError, generate_slices
from radsynth.progress import CancelToken
from radsynth.volume import Volume

torch.set_num_threads(1)
torch.set_flush_denormal(True)

ROWS, COLS, COUNT = 40, 48, 6
SPACING = (1.5, 1.25, 5.0)


def tiny_net(k: int = 2, window=(-1024.0, 3071.0)) -> ScoreUNet:
    torch.manual_seed(0)
    net = ScoreUNet({"slices": k, "channels": [8, 8], "attention_levels": [False, False],
                     "num_head_channels": 8, "norm_num_groups": 8}, 0.001, 68.0).eval()
    net.card = {"name": "tiny", "version": "0", "sde": {"type": "ve", "sigma_min": 0.001, "sigma_max": 68.0},
                "window": list(window), "architecture": {"slices": k},
                "grid": {"size": 16, "spacing_mm": 4.0, "slice_spacing_mm": 5.0}}
    return net


def phantom(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), count: int = COUNT) -> Volume:
    """Air around a soft-tissue body with two lungs; slice k carries its index in one corner voxel inside."""
    y, x = np.mgrid[:ROWS, :COLS]
    body = ((y - ROWS / 2) / 17) ** 2 + ((x - COLS / 2) / 21) ** 2 < 1
    lungs = (((y - ROWS / 2) / 9) ** 2 + ((np.abs(x - COLS / 2) - 9) / 6) ** 2) < 1
    a = np.where(body, 40, -1000).astype(np.int16)
    a[lungs] = -850
    arr = np.repeat(a[None], count, 0)
    for k in range(count):
        arr[k, ROWS // 2, COLS // 2] = 100 + k
    return Volume(arr, (-30.0, -25.0, 100.0), SPACING, tuple(float(v) for v in direction))


def run(image=None, net=None, **kw):
    return generate_slices(phantom() if image is None else image, net or tiny_net(), None,
                           steps=kw.pop("steps", 3), **kw)


@pytest.mark.parametrize("direction, below, above", [("up", 0, 3), ("down", 3, 0), ("both", 1, 2)])
def test_seeded_geometry(direction, below, above):
    image = phantom()
    res = run(image, seed_slice=2, direction=direction, slices=3)
    v = res.volume
    assert v.shape == (4, ROWS, COLS)
    assert v.spacing == image.spacing and v.direction == image.direction
    # the seed sits where it was: the output's slice `below` is the input's slice 2, in the same place
    np.testing.assert_array_equal(v.array[below], image.array[2])
    np.testing.assert_allclose(v.index_to_physical(np.array([[below, 0, 0]])),
                               image.index_to_physical(np.array([[2, 0, 0]])), atol=1e-9)
    assert res.settings["slices_below"] == below and res.settings["slices_above"] == above
    assert res.settings["slices_generated"] == 3 and not res.settings["partial"]
    assert v.is_synthetic and res.mask is None
    assert v.array.dtype == image.array.dtype


def test_k_axis_pointing_to_the_feet_grows_up_towards_the_head():
    flip = (1, 0, 0, 0, 1, 0, 0, 0, -1)
    image = phantom(flip)
    res = run(image, seed_slice=2, direction="up", slices=2)
    v = res.volume
    # up = superior: with k pointing to the feet, the new slices come at lower k, before the seed
    np.testing.assert_array_equal(v.array[2], image.array[2])
    np.testing.assert_allclose(v.index_to_physical(np.array([[2, 0, 0]])),
                               image.index_to_physical(np.array([[2, 0, 0]])), atol=1e-9)
    top = v.index_to_physical(np.array([[0, 0, 0]]))[0][2]
    assert top > image.index_to_physical(np.array([[2, 0, 0]]))[0][2]   # LPS: larger z is superior


def test_k3_seeds_with_the_real_neighbour():
    image = phantom()
    res = run(image, net=tiny_net(3), seed_slice=3, direction="up", slices=2)
    assert res.settings["seed_slices_used"] == [2, 3]
    np.testing.assert_array_equal(res.volume.array[:2], image.array[2:4])
    both = run(image, net=tiny_net(3), seed_slice=3, direction="both", slices=2)
    assert both.settings["seed_slices_used"] == [2, 3, 4] and both.volume.shape[0] == 5
    edge = run(image, net=tiny_net(3), seed_slice=0, direction="up", slices=2)   # joint first step
    assert edge.settings["seed_slices_used"] == [0] and edge.volume.shape[0] == 3


def test_unconditional_takes_only_the_grid():
    image = phantom()
    res = run(image, seed_slice=None, slices=4)
    assert res.volume.shape == (4, ROWS, COLS)
    assert res.volume.origin == image.origin and res.settings["seed_slices_used"] == []
    with pytest.raises(InvalidOptionError, match="unconditional"):
        run(image, seed_slice=None, direction="down", slices=2)


def test_same_seed_same_result_other_seed_other_result():
    a = run(seed_slice=2, slices=2, seed=1).volume.array
    b = run(seed_slice=2, slices=2, seed=1).volume.array
    c = run(seed_slice=2, slices=2, seed=2).volume.array
    np.testing.assert_array_equal(a, b)
    assert np.abs(a[1:].astype(float) - c[1:]).max() > 0


def test_model_plane_round_trip_keeps_physical_positions():
    # a 12 mm bright square 20 mm right of centre must come back 20 mm right of centre
    plane = np.full((1, ROWS, COLS), -1000.0, np.float32)
    cx = int(round((COLS - 1) / 2 + 20 / SPACING[0]))
    half = int(6 / SPACING[0])
    plane[0, ROWS // 2 - 5:ROWS // 2 + 5, cx - half:cx + half] = 500
    model = sl.to_model_plane(plane, SPACING, 16, 4.0)
    back = sl.from_model_plane(model, 4.0, SPACING, (ROWS, COLS))
    col = np.argmax(back[0].mean(0))
    assert abs(col - cx) <= 1
    assert model.min() >= -1024 - 1e-3 and model.max() <= 500 + 1e-3


def test_refusals_name_the_problem_and_change_nothing():
    image = phantom()
    before = image.array.copy()
    with pytest.raises(InvalidOptionError, match=r"outside the volume, which has slices 0\.\.5"):
        run(image, seed_slice=6)
    flat = Volume(image.array[:1].copy(), image.origin, image.spacing, image.direction)
    with pytest.raises(InvalidImageError, match="3D volume"):
        run(flat, seed_slice=0)
    coronal = Volume(image.array, image.origin, image.spacing, tuple(rotation((1, 0, 0), 90).flatten()))
    with pytest.raises(InvalidImageError, match="not axial"):
        run(coronal, seed_slice=0)
    with pytest.raises(ModelError, match=r"trained for -150\.\.150 HU"):
        run(image, net=tiny_net(window=(-150.0, 150.0)), seed_slice=2)
    with pytest.raises(MemoryLimitError, match=r"200 slices need about .* GB"):
        run(image, seed_slice=2, slices=199, available_bytes=1e6)
    with pytest.raises(InvalidOptionError, match="K=2"):
        run(image, seed_slice=2, k=3)
    wide = ICNet()
    wide.card = {"name": "wide-icnet", "window": [-2000, 150]}
    with pytest.raises(ModelError, match="different HU ranges"):
        generate_slices(image, tiny_net(), wide, seed_slice=2, slices=1, steps=3)
    np.testing.assert_array_equal(image.array, before)


def test_memory_estimate_scales_with_slices():
    one = sl.memory_needed(512, 512, 10, 64)
    two = sl.memory_needed(512, 512, 20, 64)
    assert two - one == 10 * (512 * 512 * 6 + 64 * 64 * 12)


def test_icnet_on_runs_and_is_recorded():
    ic = ICNet()
    ic.card = {"name": "ic", "version": "0", "window": [-150, 150]}
    res = generate_slices(phantom(), tiny_net(), ic, seed_slice=2, slices=2, steps=3)
    assert res.settings["icnet"] is True and "ic" in res.models


def test_cancel_keeps_finished_slices_marked_partial():
    token = CancelToken()
    stages = []

    def progress(fraction, stage):
        stages.append(stage)
        if stage.startswith("slice 2/"):
            token.cancel()

    full = run(seed_slice=2, slices=4, seed=3)
    res = run(seed_slice=2, slices=4, seed=3, cancel=token, progress=progress)
    assert res.settings["partial"] and res.settings["slices_generated"] == 1
    assert res.volume.shape[0] == 2 and res.volume.metadata["RadSynth.Partial"] == "1/4"
    assert "PARTIAL" in res.volume.metadata["RadSynth.Provenance"]
    np.testing.assert_array_equal(res.volume.array, full.volume.array[:2])
    assert any("partial" in w for w in res.warnings)
    assert any("s left" in s for s in stages)
    early = CancelToken()
    early.cancel()
    with pytest.raises(CancelledError):
        run(seed_slice=2, slices=4, cancel=early)


def test_bounded_score_clips_the_denoised_estimate_only_where_it_leaves_the_range():
    class Wild(torch.nn.Module):
        def forward(self, x, sigma):      # claims every pixel denoises to +5
            per = sigma.reshape(-1, 1).expand(x.shape[0], x.shape[1]) if sigma.dim() <= 1 else sigma
            return (5.0 - x) / per.view(*per.shape, 1, 1) ** 2

    x = torch.full((1, 2, 4, 4), 0.3)
    sigma = torch.tensor([[0.001, 2.0]])
    s = sl.bounded_score(Wild())(x, sigma)
    denoised = x + sigma.view(1, 2, 1, 1) ** 2 * s
    torch.testing.assert_close(denoised, torch.ones_like(x))
    inside = sl.bounded_score(lambda x, s: -x * 0)(x, sigma)     # D = x = 0.3: unchanged
    torch.testing.assert_close(inside, torch.zeros_like(x))


def test_neighbour_start_reproduces_the_conditional_of_an_exact_gaussian():
    """Strongly correlated neighbours (ρ = 0.98, as adjacent 5 mm slices): started at σ = 1 from the neighbour, the
    exact score's ODE gives the right conditional mean and variance of the new slice."""
    from radsynth.processes.ve_sde import VESDE, GaussianScore
    from radsynth.samplers.score import Inpaint, channel_mask

    sd, rho, seed = 0.2, 0.98, 0.4
    g = GaussianScore(torch.zeros(2), torch.tensor([[sd ** 2, rho * sd ** 2], [rho * sd ** 2, sd ** 2]]))
    sde = VESDE(0.001, 20.0)
    sampler = sl.neighbour_start_sampler(g, sde, 39, 1.0, generator=torch.Generator().manual_seed(0))
    known = torch.zeros(4, 2, 32, 32)
    known[:, 0] = seed
    out = sampler.run((4, 2, 32, 32), Inpaint(known, channel_mask(2, [0]), known_sigma=sde.sigma_min), None, None)
    new = out[:, 1].double()
    mean, var = rho * seed, sd ** 2 * (1 - rho ** 2)
    assert torch.all(out[:, 0] == seed)
    assert abs(new.mean().item() - mean) < 0.08 * var ** 0.5
    assert abs(new.var().item() / var - 1) < 0.10
    assert sampler.evaluations == 39 and g.calls == 39


@pytest.mark.parametrize("mu, drift_hu, within_hu", [(0.8, 12.0, 2.5), (1.2, 12.0, 7.0)])
def test_demo_icnet_undoes_a_known_contrast_scaling(mu, drift_hu, within_hu):
    """Soft tissue of lung1 (64² at 6 mm, −120…120 HU away from the window edges) scaled by μ about its mean: the
    bundled IC-Net brings it back within ``within_hu`` of the real slice (μ > 1 pushes tissue out of the window,
    where clipping loses it)."""
    from radsynth import models
    from radsynth.nets.icnet import calibrate_hu, perturb_contrast, window_from_card
    from radsynth.train.slices import load_stacks, sample_volumes

    net = models.load("icnet", device="cpu")
    w = window_from_card(net.card)
    stack = torch.from_numpy(load_stacks(sample_volumes()[:1], 64, 6.0, log=lambda *a: None)[0])
    cur, prev = stack[11:41], stack[10:40]
    scaled = perturb_contrast(w.to_unit(cur).unsqueeze(1), torch.full((cur.shape[0],), mu)).squeeze(1).clamp(-1, 1)
    drifted = torch.where((cur > w.lo) & (cur < w.hi), w.to_hu(scaled), cur)
    out = calibrate_hu(net, drifted, prev, w)
    inside = (cur > w.lo + 30) & (cur < w.hi - 30)
    assert (drifted - cur).abs()[inside].mean() == pytest.approx(drift_hu, abs=1.0)
    assert (out - cur).abs()[inside].mean() < within_hu
    outside = (cur <= w.lo) | (cur >= w.hi)
    assert torch.equal(out[outside], drifted[outside])


def test_training_finds_the_documented_layouts_and_runs(tmp_path):
    from radsynth.train import slices as train

    for layout, files in {"totalseg": ["s0001/ct.nii.gz", "s0002/ct.nii.gz"], "msd": ["imagesTr/lung_001.nii.gz"],
                          "flat": ["a.nii.gz", "b.nrrd"], "dicom": ["series1/1.dcm"]}.items():
        for f in files:
            (tmp_path / layout / f).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / layout / f).write_bytes(b"")
        found = train.find_volumes(tmp_path / layout)
        assert len(found) == (1 if layout == "dicom" else len(files)), layout
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="No CT volumes"):
        train.find_volumes(tmp_path / "empty")
    stacks = [np.full((4, 16, 16), -1000.0, np.float32), np.full((3, 16, 16), 40.0, np.float32)]
    windows = train.score_windows(stacks, 2)
    assert windows.shape == (4 + 3, 2, 16, 16)            # one air slice padded below each stack
    assert torch.all(windows[0, 0] == -1.0)
    arch = dict(train.SCORE_ARCH, channels=[8, 8], attention_levels=[False, False], num_head_channels=8)
    net, log = train.train_score(windows, arch, seconds=1.0, batch=2, log=lambda *a, **k: None)
    assert log["steps"] >= 1 and np.isfinite(log["final_loss_mean_last_100"])
