"""Shape generator: API contract, placement geometry and refusals, fast shape features vs pyradiomics, and the
controllability of the bundled demo GAN (requested vs achieved sphericity and volume)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy import ndimage
from scipy.stats import spearmanr

from radsynth.errors import InvalidMaskError, ModelError, RadSynthError
from radsynth.pipelines import shape as sh
from radsynth.pipelines.shape_place import PLACEMENT_KEY
from radsynth.sample_data import sample_path
from radsynth.shape_features import SHAPE_NAMES, fast_shape_features
from radsynth.train.data import lesion_mask
from radsynth.volume import Volume

torch.set_num_threads(1)

SPACING = (0.7, 0.7, 5.0)                     # x, y, z: thin in-plane, thick slices
ANGLE = np.deg2rad(20)
DIRECTION = (np.cos(ANGLE), -np.sin(ANGLE), 0.0, np.sin(ANGLE), np.cos(ANGLE), 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def model():
    return sh.load_shape_model(device="cpu")


@pytest.fixture
def image():
    return Volume(np.full((24, 160, 160), -800, dtype=np.int16), (-40.0, 30.0, -100.0), SPACING, DIRECTION)


def _ellipsoid(axes=(9.0, 7.0, 5.0)) -> np.ndarray:
    u = np.stack(np.meshgrid(*[np.arange(32) - 15.5] * 3, indexing="ij"), -1)
    return ((u / np.asarray(axes)) ** 2).sum(-1) <= 1


def _centre_lps(img: Volume, kji) -> np.ndarray:
    return img.index_to_physical(np.asarray(kji, dtype=float)[None])[0]


def _ball(img: Volume, centre, radius_mm) -> np.ndarray:
    pts = img.index_to_physical(np.indices(img.shape).reshape(3, -1).T)
    return (np.linalg.norm(pts - centre, axis=1) <= radius_mm).reshape(img.shape)


# -- generator contract -------------------------------------------------------------------------------------------
def test_output_is_one_binary_solid_mask_on_the_grid(model):
    (mask,) = sh.generate_shape(model, {"shape_Sphericity": 0.8}, seed=0)
    assert mask.dtype == bool and mask.shape == (model.grid,) * 3 == (32, 32, 32)
    assert 100 < mask.sum() < mask.size // 2
    assert ndimage.label(mask)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(mask), mask)


def test_same_seed_same_shape_and_seeds_differ(model):
    feats = {"shape_Sphericity": 0.75, "shape_Elongation": 0.7}
    a = sh.generate_shape(model, feats, seed=3)[0]
    assert np.array_equal(a, sh.generate_shape(model, feats, seed=3)[0])
    batch = sh.generate_shape(model, feats, seed=3, n=3)
    assert np.array_equal(batch[0], a)                      # sample i of a batch = seed + i
    assert np.array_equal(batch[2], sh.generate_shape(model, feats, seed=5)[0])
    others = [sh.generate_shape(model, feats, seed=s)[0] for s in (10, 11, 12)]
    assert all((a ^ o).sum() > 20 for o in others)


def test_preview_reports_features_measured_at_the_requested_volume(model):
    mask, measured = sh.preview(model, {"volume_ml": 7.5, "shape_Sphericity": 0.8}, seed=4)
    assert np.array_equal(mask, sh.generate_shape(model, {"shape_Sphericity": 0.8}, seed=4)[0])
    _, voxel_mm = sh.scale_to_volume(mask, 7.5)
    direct = fast_shape_features(mask, (voxel_mm,) * 3)
    assert measured["volume_ml"] == pytest.approx(7.5)
    for name in SHAPE_NAMES:
        assert measured[name] == pytest.approx(direct[name], rel=1e-9), name
    with pytest.raises(RadSynthError, match="volume"):
        sh.preview(model, {"shape_Sphericity": 0.8})


def test_complete_features_fills_every_condition_and_keeps_fixed(model):
    fixed = {"volume_ml": 4.0, "shape_Sphericity": 0.62, "shape_Flatness": 0.4}
    full = sh.complete_features(model, fixed)
    assert set(full) == set(sh.COND_FEATURES) | {"volume_ml"}
    assert all(full[k] == v for k, v in fixed.items())
    assert all(np.isfinite(v) for v in full.values())
    rounder = sh.complete_features(model, {"shape_Sphericity": 0.88})
    # less spherical → more surface per volume: the conditional mean must follow the fixed value
    assert full["shape_SurfaceArea/V^(2/3)"] > rounder["shape_SurfaceArea/V^(2/3)"]
    assert set(sh.complete_features(model, {})) == set(sh.COND_FEATURES)


def test_complete_features_accepts_a_measured_tumour(model):
    measured = fast_shape_features(_ellipsoid(), (1.5, 1.5, 1.5))
    full = sh.complete_features(model, measured)
    assert full["volume_ml"] == pytest.approx(measured["shape_MeshVolume"] / 1000)
    assert full["shape_Maximum3DDiameter/V^(1/3)"] == pytest.approx(
        measured["shape_Maximum3DDiameter"] / measured["shape_MeshVolume"] ** (1 / 3))


@pytest.mark.parametrize("bad, words", [
    ({"shape_Sphericity": 1.5}, "Sphericity must be between 0 and 1"),
    ({"shape_Sphericity": 0.0}, "Sphericity must be between 0 and 1"),
    ({"shape_Elongation": -0.2}, "Elongation must be between 0 and 1"),
    ({"shape_Elongation": 0.5, "shape_Flatness": 0.7}, "Flatness (0.7) cannot exceed elongation"),
    ({"volume_ml": 0.0}, "volume must be more than 0 mL"),
    ({"shape_Sphericity": float("nan")}, "finite number"),
    ({"shape_Roundness": 0.5}, "Unknown shape feature"),
])
def test_invalid_requests_are_refused_clearly(model, bad, words):
    with pytest.raises(RadSynthError, match=words.replace("(", r"\(").replace(")", r"\)")):
        sh.complete_features(model, bad)


def test_model_loading_refuses_missing_wrong_kind_and_corrupt(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        sh.load_shape_model(tmp_path / "nowhere", device="cpu")
    copy = tmp_path / "copy"
    shutil.copytree(sh.bundled(sh.DEMO_SHAPE), copy)
    card = json.loads((copy / "card.json").read_text())
    (copy / "card.json").write_text(json.dumps(dict(card, kind="vqgan")))
    with pytest.raises(ModelError, match="'vqgan' model"):
        sh.load_shape_model(copy, device="cpu")
    (copy / "card.json").write_text(json.dumps(card))
    with open(copy / "weights.safetensors", "r+b") as fh:
        fh.seek(-64, 2)
        fh.write(b"\0" * 64)
    with pytest.raises(ModelError, match="corrupt"):
        sh.load_shape_model(copy, device="cpu")


# -- placement ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("volume_ml", [0.5, 3.0, 20.0])
def test_place_hits_volume_and_lands_on_the_point(image, volume_ml):
    mask, voxel_mm = sh.scale_to_volume(_ellipsoid(), volume_ml)
    assert fast_shape_features(mask, (voxel_mm,) * 3)["shape_MeshVolume"] == pytest.approx(volume_ml * 1000)
    centre = _centre_lps(image, (11.3, 80.4, 77.8))
    label = sh.place_shape(image, centre, mask, voxel_mm)
    assert label.same_grid(image) and label.array.dtype == np.uint8
    voxels = np.argwhere(label.array > 0)
    assert len(voxels) * np.prod(SPACING) / 1000 == pytest.approx(volume_ml, rel=0.1)
    assert np.linalg.norm(image.index_to_physical(voxels).mean(0) - centre) < 2.5   # half a slice
    info = json.loads(label.metadata[PLACEMENT_KEY])
    assert info["kept_fraction"] == 1.0 and info["shift_lps_mm"] == [0.0, 0.0, 0.0]


def test_place_shifts_into_the_organ(image):
    organ_centre = _centre_lps(image, (12, 80, 80))
    organ = _ball(image, organ_centre, 30.0)
    mask, voxel_mm = sh.scale_to_volume(_ellipsoid(), 8.0)              # ~25 mm across
    click = organ_centre + np.array([24.0, 0.0, 0.0])                   # inside, but the tumour would stick out
    label = sh.place_shape(image, click, mask, voxel_mm, organ=organ)
    inside = label.array > 0
    assert inside.any() and not (inside & ~organ).any()
    info = json.loads(label.metadata[PLACEMENT_KEY])
    assert info["kept_fraction"] >= 0.99 and np.linalg.norm(info["shift_lps_mm"]) > 3
    assert info["volume_ml"] == pytest.approx(8.0, rel=0.1)


def test_place_clips_to_a_slightly_too_thin_organ(image):
    organ = np.zeros(image.shape, dtype=bool)
    organ[:, 66:94, :] = True                                           # 19.6 mm slab
    mask, voxel_mm = sh.scale_to_volume(_ellipsoid((7.0, 7.0, 7.0)), 4.4)   # a ~20 mm ball
    label = sh.place_shape(image, _centre_lps(image, (12, 80, 80)), mask, voxel_mm, organ=organ)
    info = json.loads(label.metadata[PLACEMENT_KEY])
    assert not ((label.array > 0) & ~organ).any()
    assert 0.9 <= info["kept_fraction"] < 1.0


def test_place_refusals(image):
    mask, voxel_mm = sh.scale_to_volume(_ellipsoid(), 6.0)
    centre = _centre_lps(image, (12, 80, 80))
    with pytest.raises(InvalidMaskError, match="outside the image"):
        sh.place_shape(image, centre + np.array([0.0, 0.0, 500.0]), mask, voxel_mm)
    with pytest.raises(InvalidMaskError, match="beyond the edge of the image"):
        sh.place_shape(image, _centre_lps(image, (12, 80, 2)), mask, voxel_mm)
    tiny, tiny_mm = sh.scale_to_volume(_ellipsoid(), 0.001)
    with pytest.raises(InvalidMaskError, match="smaller than one image voxel"):
        sh.place_shape(image, centre, tiny, tiny_mm)
    organ = _ball(image, centre, 9.0)
    with pytest.raises(InvalidMaskError, match="outside the selected organ"):
        sh.place_shape(image, centre + np.array([20.0, 0.0, 0.0]), mask, voxel_mm, organ=organ)
    with pytest.raises(InvalidMaskError, match="does not fit inside the selected organ"):
        sh.place_shape(image, centre, mask, voxel_mm, organ=organ)


# -- fast shape features == pyradiomics ---------------------------------------------------------------------------
def _pyradiomics_shape(mask: np.ndarray, spacing_xyz) -> dict[str, float]:
    from radiomics.shape import RadiomicsShape
    img = sitk.GetImageFromArray(np.zeros(mask.shape, dtype=np.float32))
    msk = sitk.GetImageFromArray(mask.astype(np.uint8))
    for im in (img, msk):
        im.SetSpacing(tuple(float(s) for s in spacing_xyz))
    ext = RadiomicsShape(img, msk, label=1)
    ext.enableAllFeatures()
    return {f"shape_{k}": float(v) for k, v in ext.execute().items()}


def _assert_close(mask, spacing_xyz):
    fast = fast_shape_features(mask, spacing_xyz[::-1])
    ref = _pyradiomics_shape(mask, spacing_xyz)
    for name in SHAPE_NAMES:
        assert fast[name] == pytest.approx(ref[name], rel=0.01), name


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_fast_shape_features_match_pyradiomics_on_sample_tumours(case):
    label = sitk.ReadImage(str(sample_path(case, "label")))
    arr = sitk.GetArrayFromImage(label) == 1
    box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in ndimage.find_objects(arr.astype(np.uint8))[0])
    _assert_close(arr[box], label.GetSpacing())


def test_fast_shape_features_match_pyradiomics_on_random_lesions():
    rng = np.random.default_rng(7)
    for spacing in [(1.0, 1.0, 1.0), (0.7, 0.7, 2.5), (1.3, 0.9, 1.1)]:
        _assert_close(lesion_mask(40, 1.0, rng, (10.0, 30.0), roughness=rng.uniform(0.1, 0.5)), spacing)


# -- controllability of the bundled demo model --------------------------------------------------------------------
def test_achieved_sphericity_tracks_requested(model):
    requested, achieved = [], []
    for s in np.linspace(0.62, 0.9, 8):
        for seed in range(3):
            _, measured = sh.preview(model, {"volume_ml": 5.0, "shape_Sphericity": float(s)}, seed=seed)
            requested.append(s)
            achieved.append(measured["shape_Sphericity"])
    assert spearmanr(requested, achieved)[0] > 0.6


def test_achieved_volume_tracks_requested(model):
    requested = np.geomspace(0.3, 80.0, 8)
    achieved = [sh.preview(model, {"volume_ml": float(v), "shape_Sphericity": 0.8}, seed=i)[1]["volume_ml"]
                for i, v in enumerate(requested)]
    assert spearmanr(requested, achieved)[0] > 0.8
    assert np.allclose(achieved, requested, rtol=1e-6)          # exact by construction of the scaling
