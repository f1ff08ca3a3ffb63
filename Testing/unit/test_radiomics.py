"""Radiomics service: feature naming, extraction on real tumours, normalization, presets, user feature files."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import SimpleITK as sitk

from radsynth import radiomics as rad
from radsynth.errors import InvalidMaskError, ModelError, RadSynthError
from radsynth.sample_data import sample_path
from radsynth.volume import Volume, read_volume


@pytest.fixture(scope="module")
def lung2():
    return read_volume(sample_path("lung2", "image")), read_volume(sample_path("lung2", "label"))


@pytest.fixture(scope="module")
def lung2_features(lung2):
    return rad.texture_features(*lung2)


@pytest.fixture(scope="module")
def model_grid_crop(lung2):
    """lung2 around its tumour on a 64³ grid at 1.5 mm, i.e. what the models see (no resampling by pyradiomics)."""
    image, label = lung2
    centre = image.index_to_physical(np.argwhere(label.array > 0)).mean(axis=0)
    ref = sitk.Image(64, 64, 64, sitk.sitkInt16)
    ref.SetSpacing((1.5, 1.5, 1.5))
    ref.SetDirection(image.direction)
    ref.SetOrigin(tuple(centre - np.asarray(image.direction).reshape(3, 3) @ np.full(3, 31.5 * 1.5)))
    img = sitk.Resample(image.to_sitk(), ref, sitk.Transform(), sitk.sitkLinear, -1024, sitk.sitkInt16)
    lab = sitk.Resample(label.to_sitk(), ref, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return Volume.from_sitk(img), sitk.GetArrayFromImage(lab)


# -- names --------------------------------------------------------------------------------------------------------
def test_names_are_stable_ordered_and_cover_all_classes():
    names = rad.texture_feature_names()
    assert names == rad.texture_feature_names()
    assert len(names) == 93  # pyradiomics 3.1.4 defaults: 18 + 24 + 16 + 16 + 14 + 5
    assert len(set(names)) == len(names)
    classes = [n.split("_", 1)[0] for n in names]
    assert list(dict.fromkeys(classes)) == list(rad.TEXTURE_CLASSES)
    for cls in rad.TEXTURE_CLASSES:
        within = [n for n in names if n.startswith(cls + "_")]
        assert within == sorted(within)
    assert "firstorder_Mean" in names and "glcm_Contrast" in names
    assert "firstorder_StandardDeviation" not in names  # deprecated in pyradiomics, so not default-enabled


def test_params_version_matches_parameter_file():
    text = rad.PARAMS_PATH.read_text()
    assert re.search(r"^# params-version: (\S+)$", text, re.M).group(1) == rad.PARAMS_VERSION


# -- extraction ---------------------------------------------------------------------------------------------------
def test_extraction_keys_match_names(lung2_features):
    assert list(lung2_features) == rad.texture_feature_names()
    assert all(math.isfinite(v) for v in lung2_features.values())


def test_extraction_matches_direct_pyradiomics(lung2_features):
    from radiomics.featureextractor import RadiomicsFeatureExtractor
    extractor = RadiomicsFeatureExtractor(str(rad.PARAMS_PATH))
    direct = extractor.execute(str(sample_path("lung2", "image")), str(sample_path("lung2", "label")))
    for name, value in lung2_features.items():
        assert value == pytest.approx(float(direct["original_" + name]), rel=1e-9, abs=1e-12), name


def test_shape_features_measure_tumour_volume(lung2):
    image, label = lung2
    shape = rad.shape_features(image, label)
    assert list(shape) == rad.shape_feature_names() and all(n.startswith("shape_") for n in shape)
    native_mm3 = (label.array > 0).sum() * np.prod(label.spacing)
    assert shape["shape_VoxelVolume"] == pytest.approx(native_mm3, rel=0.1)
    assert 0 < shape["shape_Sphericity"] <= 1


def test_brighter_tumour_shifts_first_order_only(model_grid_crop):
    image, mask = model_grid_crop
    assert mask.sum() > 1000
    base = rad.texture_features(image, mask)
    bright = rad.texture_features(image.with_array(np.where(mask > 0, image.array + 100, image.array)), mask)
    for name in ("Mean", "Median", "Minimum", "Maximum", "10Percentile", "90Percentile"):
        assert bright[f"firstorder_{name}"] == pytest.approx(base[f"firstorder_{name}"] + 100, abs=1e-6)
    for name in ("Variance", "Range", "InterquartileRange", "Entropy", "Uniformity"):
        assert bright[f"firstorder_{name}"] == pytest.approx(base[f"firstorder_{name}"], rel=1e-9)
    # Bins are spaced from 0 HU in steps of 25, so a +100 HU shift moves every voxel exactly 4 bins and the
    # bin-index based texture matrices (hence all texture features) are unchanged.
    for name in rad.texture_feature_names():
        if not name.startswith("firstorder_"):
            assert bright[name] == pytest.approx(base[name], rel=1e-9, abs=1e-12), name
    assert bright["firstorder_Energy"] != pytest.approx(base["firstorder_Energy"], rel=1e-3)


def test_mask_volume_and_array_give_same_features(model_grid_crop):
    image, mask = model_grid_crop
    as_volume = image.with_array(mask.astype(np.int16) * 3)  # any non-zero label counts as tumour
    assert rad.texture_features(image, as_volume) == rad.texture_features(image, mask)


@pytest.mark.parametrize("n_voxels", [0, 3])
def test_empty_or_tiny_mask_is_refused(model_grid_crop, n_voxels):
    image, _ = model_grid_crop
    mask = np.zeros(image.shape, np.uint8)
    mask[32, 32, 32:32 + n_voxels] = 1
    with pytest.raises(InvalidMaskError, match="empty" if n_voxels == 0 else "only 3 voxel"):
        rad.texture_features(image, mask)


def test_one_dimensional_mask_is_refused(model_grid_crop):
    image, _ = model_grid_crop
    mask = np.zeros(image.shape, np.uint8)
    mask[32, 32, 20:40] = 1  # 20 voxels, but a line has no texture
    with pytest.raises(InvalidMaskError, match="too thin"):
        rad.texture_features(image, mask)


def test_empty_mask_volume_and_wrong_shape_are_refused(model_grid_crop):
    image, mask = model_grid_crop
    with pytest.raises(InvalidMaskError, match="empty"):
        rad.texture_features(image, image.with_array(np.zeros(image.shape, np.uint8)))
    with pytest.raises(InvalidMaskError, match="does not match"):
        rad.texture_features(image, mask[:-1])


# -- normalizer ---------------------------------------------------------------------------------------------------
def _rows(n=40, seed=0):
    rng = np.random.default_rng(seed)
    names = rad.texture_feature_names()
    scale = rng.uniform(0.01, 1e6, len(names))
    return names, [dict(zip(names, rng.normal(scale, scale / 3))) for _ in range(n)]


def test_normalizer_round_trip():
    names, rows = _rows()
    norm = rad.FeatureNormalizer.fit(names, rows)
    z = norm.normalize(rows[5])
    assert z.dtype == np.float32 and z.shape == (len(names),)
    assert np.abs(z).max() < norm.CLIP
    back = norm.denormalize(z)
    assert list(back) == names
    np.testing.assert_allclose([back[n] for n in names], [rows[5][n] for n in names], rtol=1e-5)
    table = np.stack([norm.normalize(r) for r in rows])
    np.testing.assert_allclose(table.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(table.std(0), 1, atol=1e-4)


def test_normalizer_dict_round_trip_through_json():
    names, rows = _rows()
    norm = rad.FeatureNormalizer.fit(names, rows)
    again = rad.FeatureNormalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.names == norm.names and again.params_version == rad.PARAMS_VERSION
    np.testing.assert_array_equal(again.normalize(rows[3]), norm.normalize(rows[3]))
    again.require_current_params()
    with pytest.raises(ModelError, match="unreadable"):
        rad.FeatureNormalizer.from_dict({"names": names})
    with pytest.raises(ModelError, match="ct-v0"):
        rad.FeatureNormalizer.from_dict({**norm.to_dict(), "params_version": "ct-v0"}).require_current_params()


def test_normalizer_clips_out_of_distribution_and_guards_constant_features():
    names = ["a", "b", "c"]
    norm = rad.FeatureNormalizer.fit(names, [{"a": 0.0, "b": 1.0, "c": 7.0}, {"a": 2.0, "b": 3.0, "c": 7.0}])
    z = norm.normalize({"a": 1e9, "b": -1e9, "c": 7.0})
    np.testing.assert_array_equal(z, np.array([5, -5, 0], np.float32))
    assert np.all(np.isfinite(norm.normalize({"a": 1.0, "b": 2.0, "c": 7.1})))


def test_normalizer_reports_missing_features():
    names, rows = _rows(5)
    norm = rad.FeatureNormalizer.fit(names, rows)
    partial = {k: v for k, v in rows[0].items() if k not in ("glcm_Contrast", "ngtdm_Busyness")}
    with pytest.raises(RadSynthError, match="glcm_Contrast.*ngtdm_Busyness|ngtdm_Busyness.*glcm_Contrast"):
        norm.normalize(partial)
    with pytest.raises(RadSynthError, match="missing"):
        rad.FeatureNormalizer.fit(names, [partial])
    with pytest.raises(RadSynthError, match="not finite"):
        norm.normalize({**rows[0], "glcm_Contrast": float("nan")})


# -- presets and user files ---------------------------------------------------------------------------------------
def test_presets_load_complete_and_current(lung2_features):
    assert rad.list_presets() == ["lung1-tumor", "lung2-tumor"]
    for name in rad.list_presets():
        preset = rad.load_preset(name)
        assert list(preset) == rad.texture_feature_names()
        assert all(math.isfinite(v) for v in preset.values())
    # A stale preset file (parameters changed, presets not regenerated) would fail here.
    stored = rad.load_preset("lung2-tumor")
    assert stored == pytest.approx(lung2_features, rel=1e-9)
    assert json.loads(rad.PRESETS_PATH.read_text())["params_version"] == rad.PARAMS_VERSION


def test_unknown_preset_lists_available():
    with pytest.raises(RadSynthError, match="lung1-tumor, lung2-tumor"):
        rad.load_preset("liver-tumor")


def test_load_features_json_forms_and_errors(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"firstorder_Mean": 40, "glcm_Contrast": 2.5}))
    assert rad.load_features_json(plain) == {"firstorder_Mean": 40.0, "glcm_Contrast": 2.5}
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"features": {"firstorder_Mean": 1}, "params_version": rad.PARAMS_VERSION}))
    assert rad.load_features_json(wrapped) == {"firstorder_Mean": 1.0}
    cases = {
        "broken.json": ("{not json", "not valid JSON"),
        "text.json": (json.dumps({"firstorder_Mean": "high"}), "firstorder_Mean"),
        "bool.json": (json.dumps({"firstorder_Mean": True}), "not finite numbers"),
        "list.json": (json.dumps([1, 2]), "JSON object"),
        "old.json": (json.dumps({"features": {"a": 1}, "params_version": "ct-v0"}), "ct-v0"),
    }
    for fname, (content, message) in cases.items():
        (tmp_path / fname).write_text(content)
        with pytest.raises(RadSynthError, match=message):
            rad.load_features_json(tmp_path / fname)
    with pytest.raises(RadSynthError, match="not found"):
        rad.load_features_json(tmp_path / "missing.json")


def test_features_without_resampling_crop_the_mask_too(monkeypatch):
    """With resampling off pyradiomics needs image and mask on one grid; the cropped image must get a cropped mask
    (it raised an uncaught RuntimeError before), and the values equal those of the uncropped pair."""
    import numpy as np
    import radiomics.featureextractor as fe
    from radsynth import radiomics as rs
    from radsynth.volume import Volume

    rng = np.random.default_rng(0)
    array = (rng.normal(40, 30, (40, 120, 120))).astype(np.int16)
    image = Volume(array, (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    inside = np.zeros(array.shape, bool)
    inside[16:24, 52:68, 50:70] = True
    assert rs._crop_around(image, inside).shape != image.shape   # the image really is cut
    rs._extractor.cache_clear()
    real_init = fe.RadiomicsFeatureExtractor.__init__

    def no_resampling(self, *a, **k):
        real_init(self, *a, **k)
        self.settings["resampledPixelSpacing"] = None

    monkeypatch.setattr(fe.RadiomicsFeatureExtractor, "__init__", no_resampling)
    try:
        got = rs.texture_features(image, inside)
        direct = rs._extractor(rs.TEXTURE_CLASSES).execute(image.to_sitk(), image.label_like(inside).to_sitk(),
                                                           label=1)
    finally:
        rs._extractor.cache_clear()
    assert got["firstorder_Mean"] == pytest.approx(float(direct["original_firstorder_Mean"]))
    assert got["glcm_Contrast"] == pytest.approx(float(direct["original_glcm_Contrast"]))
