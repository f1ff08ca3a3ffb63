"""Distribution metrics of radsynth.evaluate: identical sets score ~0 (MS-SSIM: 1), known shifts are ordered, the
continuity score sees per-slice contrast stripes on a real CT, degenerate input gets a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from radsynth.evaluate import distribution as D
from radsynth.evaluate import organs
from radsynth.evaluate.fid import MISSING_WEIGHTS, fid_unavailable, plane_images


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def test_hu_distance_is_zero_for_identical_samples_and_ordered_by_shift(rng):
    real = rng.normal(40, 30, 5000)
    same = D.hu_distance(real, real)
    assert same["wasserstein_hu"] == 0 and same["js_divergence"] == pytest.approx(0, abs=1e-12)
    near, far = D.hu_distance(real, real + 30), D.hu_distance(real, real + 100)
    assert near["wasserstein_hu"] == pytest.approx(30, abs=1.5)     # W1 of a pure shift is the shift (10 HU bins)
    assert far["wasserstein_hu"] == pytest.approx(100, abs=1.5)
    assert near["js_divergence"] < far["js_divergence"] <= 1


def test_hu_distance_refuses_a_nearly_empty_region():
    with pytest.raises(D.MetricError, match="at least 50"):
        D.hu_distance(np.zeros(3), np.zeros(1000))


def test_frechet_distance_zero_for_identical_sets_and_ordered(rng):
    a = rng.normal(0, 1, (200, 6)) * [1, 2, 3, 1, 1, 5] + [0, 10, 0, -3, 0, 100]
    assert D.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    b = rng.normal(0, 1, (200, 6)) * [1, 2, 3, 1, 1, 5] + [0, 10, 0, -3, 0, 100]
    small = D.frechet_distance(a, b + 0.5 * a.std(0))
    large = D.frechet_distance(a, b + 2.0 * a.std(0))
    assert D.frechet_distance(a, b) < small < large
    # z-scored on the real set: a shift of k real SDs in every one of 6 features costs about 6 k²
    assert large == pytest.approx(6 * 4, rel=0.25)


def test_frechet_distance_is_finite_with_fewer_samples_than_features(rng):
    a, b = rng.normal(0, 1, (6, 15)), rng.normal(0, 1, (6, 15))
    value = D.frechet_distance(a, b)
    assert np.isfinite(value) and value > 0


@pytest.mark.parametrize("a, b, says", [
    (np.zeros((3, 4)), np.zeros((10, 4)), "at least 4"),
    (np.zeros((10, 4)), np.zeros((10, 5)), "differ in width"),
    (np.zeros(10), np.zeros((10, 1)), "samples, features"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), "not finite"),
])
def test_frechet_distance_refuses_degenerate_input(a, b, says):
    with pytest.raises(D.MetricError, match=says):
        D.frechet_distance(a, b)


def test_ms_ssim_settings_fit_small_images():
    kernel, weights = D.ms_ssim_settings((256, 256))
    assert kernel == 7 and len(weights) == 5           # the usual setting where it fits
    kernel, weights = D.ms_ssim_settings((64, 64))
    assert kernel == 7 and len(weights) == 4 and sum(weights) == pytest.approx(1)
    kernel, weights = D.ms_ssim_settings((10, 10))     # 10 > (5 - 1) * 2: two scales with a 5-pixel kernel
    assert kernel == 5 and len(weights) == 2
    kernel, weights = D.ms_ssim_settings((6, 6))
    assert kernel == 3 and len(weights) == 2
    with pytest.raises(D.MetricError, match="too small"):
        D.ms_ssim_settings((4, 4))


def test_ms_ssim_diversity_one_for_identical_variants_lower_for_diverse(rng):
    base = rng.normal(0, 200, (2, 64, 64))
    same = D.ms_ssim_diversity(np.stack([base, base, base]), (-500, 500))
    assert same["ms_ssim_mean"] == pytest.approx(1, abs=1e-5) and same["pairs"] == 3
    close = D.ms_ssim_diversity(np.stack([base, base + rng.normal(0, 20, base.shape)]), (-500, 500))
    apart = D.ms_ssim_diversity(np.stack([base, rng.normal(0, 200, base.shape)]), (-500, 500))
    assert apart["ms_ssim_mean"] < close["ms_ssim_mean"] < 1
    with pytest.raises(D.MetricError, match="two variants"):
        D.ms_ssim_diversity(base[None], (-500, 500))


def test_mmd2_near_zero_for_one_distribution_and_ordered(rng):
    x, y = rng.normal(0, 1, (100, 4)), rng.normal(0, 1, (100, 4))
    assert abs(D.mmd2(x, y)) < 0.02
    h = D.median_bandwidth(x, y)
    assert D.mmd2(x, y + 0.5, h) < D.mmd2(x, y + 2.0, h)
    b = D.batch_mmd2(x, y + 1.0, batch=16)
    assert b["bmmd2_mean"] > 5 * abs(D.batch_mmd2(x, y, batch=16)["bmmd2_mean"]) and b["batch"] == 16
    with pytest.raises(D.MetricError, match="at least two"):
        D.mmd2(x[:1], y)


@pytest.fixture(scope="module")
def lung1():
    from radsynth.anatomy import body_mask
    from radsynth.sample_data import sample_path
    from radsynth.volume import read_volume

    ct = read_volume(sample_path("lung1", "image"))
    box = (slice(10, 40), slice(100, 420, 2), slice(60, 460, 2))    # chest slices, every 2nd pixel: fast
    return ct.array[box].astype(np.float64), body_mask(ct)[box]


def test_continuity_detects_per_slice_contrast_stripes_on_a_real_ct(lung1, rng):
    hu, body = lung1
    real = D.continuity(hu, body, (-150, 150))
    assert D.relative(real, real) == {"voxel_jump_hu_ratio": 1.0, "stripe_hu_ratio": 1.0}
    striped = hu.copy()
    for k in range(len(striped)):           # IC-Net's training corruption: contrast × U[0.7, 1.3] about the mean
        mean = striped[k][body[k]].mean()
        striped[k] = mean + rng.uniform(0.7, 1.3) * (striped[k] - mean)
    bad = D.continuity(striped, body, (-150, 150))
    assert bad["stripe_hu"] > 2 * real["stripe_hu"]
    assert bad["voxel_jump_hu"] > real["voxel_jump_hu"]
    # a smooth trend along the body axis (a gradual drift, not a stripe) hardly moves the stripe score
    drift = hu + np.linspace(0, 30, len(hu))[:, None, None]
    assert D.continuity(drift, body, (-150, 150))["stripe_hu"] < 1.3 * real["stripe_hu"]


def test_continuity_refuses_an_empty_body_or_a_2d_image(lung1):
    hu, body = lung1
    with pytest.raises(D.MetricError, match="empty"):
        D.continuity(hu, np.zeros_like(body))
    with pytest.raises(D.MetricError, match="3D volume"):
        D.continuity(hu[0], body[0])


def test_organ_adherence_against_real_ranges():
    vol = np.full((4, 20, 20), -850.0)
    liver = np.zeros(vol.shape, bool)
    liver[1:3, 5:15, 5:15] = True
    vol[liver] = 60.0
    spleen = np.zeros(vol.shape, bool)
    spleen[0, :10, :10] = True               # left at lung density: out of the spleen's range
    rep = organs.organ_adherence(vol, {"liver": liver, "Spleen": spleen, "lung_upper_lobe_left": ~liver & ~spleen,
                                       "gizmo": liver})
    seg = rep["segments"]
    assert seg["liver"]["inside"] and seg["lung_upper_lobe_left"]["inside"] and not seg["Spleen"]["inside"]
    assert rep["unmapped"] == ["gizmo"] and rep["adherence"] == pytest.approx(2 / 3)
    assert organs.organ_of("lung nodule") == "nodule" and organs.organ_of("kidney_right") == "kidney"
    with pytest.raises(Exception, match="grid"):
        organs.organ_adherence(vol, {"liver": liver[0]})


def test_nodule_present_where_drawn_absent_where_erased():
    vol = np.full((3, 10, 10), -850.0)
    drawn = np.zeros(vol.shape, bool)
    drawn[1, 2:5, 2:5] = True
    erased = np.zeros(vol.shape, bool)
    erased[1, 6:9, 6:9] = True
    assert organs.nodule_check(vol, drawn, erased) == {
        "drawn": {"mean_hu": -850.0, "present": False, "threshold_hu": organs.NODULE_PRESENT_HU},
        "erased": {"mean_hu": -850.0, "absent": True, "threshold_hu": organs.AERATED_HU}}
    vol[drawn], vol[erased] = 30.0, 20.0
    check = organs.nodule_check(vol, drawn, erased)
    assert check["drawn"]["present"] and not check["erased"]["absent"]


def test_fid_says_what_is_missing(tmp_path):
    assert fid_unavailable(None) == MISSING_WEIGHTS and "never downloads" in MISSING_WEIGHTS
    assert "does not exist" in fid_unavailable(tmp_path / "nothing.safetensors")


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised Inception-v3 feature network saved as torchvision's keys would be (no weights are
    shipped or downloaded; what FID computes with them is the user's choice)."""
    import torch
    from safetensors.torch import save_file

    from radsynth.evaluate.inception import InceptionV3Features

    torch.manual_seed(0)
    net = InceptionV3Features()
    for m in net.modules():       # He init keeps activations alive through 90 layers (PyTorch's default fades them)
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)            # torchvision's classifier and aux head are ignored
    state["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    path = tmp_path_factory.mktemp("inception") / "inception_v3.safetensors"
    save_file(state, str(path))
    return path


def test_fid_with_user_weights_zero_for_identical_sets_positive_otherwise(inception_file, rng):
    from radsynth.evaluate.fid import fid_planes, load_inception

    net = load_inception(inception_file)
    vol = rng.normal(-200, 300, (2, 40, 40))
    body = np.ones(vol.shape, bool)
    same = fid_planes(net, [(vol, body)], [(vol, body)], planes=("axial",), size=80)["axial"]  # 80²: fast
    assert same["fid"] == pytest.approx(0, abs=1e-6) and same["images_real"] == 2
    other = fid_planes(net, [(vol, body)], [(vol[:, ::-1] * 0.5, body)], planes=("axial",), size=80)["axial"]
    assert other["fid"] > 1e-3


def test_fid_weights_of_another_network_or_with_code_are_refused(tmp_path, inception_file):
    import torch
    from safetensors.torch import save_file

    from radsynth.errors import ModelError
    from radsynth.evaluate.fid import load_inception

    wrong = tmp_path / "wrong.safetensors"
    save_file({"Conv2d_1a_3x3.conv.weight": torch.zeros(8, 3, 3, 3)}, str(wrong))
    with pytest.raises(ModelError, match="not a torchvision inception_v3 state dict.*missing"):
        load_inception(wrong)
    pickled = tmp_path / "code.pt"
    torch.save({"weights": torch.zeros(1), "hook": _Hook()}, pickled)   # an object: needs unpickling code
    with pytest.raises(ModelError, match="tensor-only"):
        load_inception(pickled)


class _Hook:
    pass


def test_fid_plane_images_follow_the_body(lung1):
    hu, body = lung1
    assert plane_images(hu, body, "axial").shape[1:] == hu.shape[1:]
    cor = plane_images(hu, body, "coronal", stride=4)
    assert cor.shape[1:] == (hu.shape[0], hu.shape[2]) and 2 <= len(cor) <= hu.shape[1] // 2 // 4 + 1


def test_radiomics_patch_features_frechet_zero_on_itself_and_larger_when_shifted():
    from radsynth.evaluate.roi_features import FRECHET_FEATURES, region_features, regions
    from radsynth.evaluate.sections import crop_slices
    from radsynth.sample_data import sample_path
    from radsynth.volume import read_volume

    ct = crop_slices(read_volume(sample_path("lung2", "image")), 26, 32)
    masks = regions(ct)
    real = region_features(ct, [2, 3], per_slice=4, masks=masks)
    assert real["soft_tissue"].shape == (8, len(FRECHET_FEATURES)) and len(real["lung"]) >= 4
    brighter = ct.with_array(np.where(masks["soft_tissue"], ct.array + 120, ct.array).astype(ct.array.dtype))
    shifted = region_features(brighter, [2, 3], per_slice=4, masks=masks)
    same = D.frechet_distance(real["soft_tissue"], real["soft_tissue"])
    assert same == pytest.approx(0, abs=1e-6)
    assert D.frechet_distance(real["soft_tissue"], shifted["soft_tissue"]) > 10
    # the lung patches were not changed (only the soft tissue around them, which the resampling sees at their edge)
    assert D.frechet_distance(real["lung"], shifted["lung"]) < 0.1 * D.frechet_distance(real["soft_tissue"],
                                                                                         shifted["soft_tissue"])
