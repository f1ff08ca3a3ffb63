"""TumorSynth's fine-texture stage (radsynth/texture_detail.py): where it writes, how its amplitude and grain follow
the request, its calibration, and reproducibility."""

import copy

import numpy as np
import pytest
from scipy import ndimage

from radsynth import texture_detail as td
from radsynth.errors import ModelError
from radsynth.models import bundled, read_card
from radsynth.radiomics import FeatureNormalizer
from radsynth.pipelines.texture_fill import (FOLLOWED, NOT_FOLLOWED, SLIDER_EVALUATION, follows, unfollowed,
                                             verdict)
from radsynth.volume import Volume

SPACING = (0.6, 0.6, 5.0)   # (i, j, k) mm, like the sample CTs


def _toy_calibration() -> td.Calibration:
    """Entropy rising with spread, contrast rising with spread and falling with grain (as measured)."""
    sd = np.array(td.SD_AXIS_HU)
    grain = np.array(td.GRAIN_AXIS_MM)
    entropy = np.log2((sd + 5.0) / 25.0)[:, None] + 2.0 + 0.1 * np.log(grain)[None, :]
    contrast = (sd ** 2 / 625.0)[:, None] * (0.9 / (1.0 + grain))[None, :]
    return td.Calibration(sd, grain, entropy, contrast)


def _site(seed=0):
    """A smooth, blurred-edge 'decoded' lesion in lung on a thick-slice grid."""
    shape = (12, 64, 64)
    k, j, i = np.ogrid[:shape[0], :shape[1], :shape[2]]
    r = np.sqrt(((i - 32) * 0.6) ** 2 + ((j - 32) * 0.6) ** 2 + ((k - 6) * 5.0) ** 2)
    mask = r <= 12.0
    lesion = np.clip((14.0 - r) / 4.0, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    hu = -850.0 + 880.0 * lesion + ndimage.gaussian_filter(rng.normal(0, 200, shape), (0.5, 4, 4))
    return Volume(np.rint(hu).astype(np.int16), spacing=SPACING, origin=(0.0, 0.0, 0.0),
                  direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), mask


def test_the_stage_changes_only_the_lesion_and_its_margin():
    volume, mask = _site()
    params = td.DetailParams(40.0, 120.0, 0.6)
    out = td.apply(volume, mask, params, margin_mm=1.5, seed=3)
    dist = ndimage.distance_transform_edt(~mask, sampling=np.asarray(SPACING)[::-1])
    far = dist > 1.5
    assert np.array_equal(out.array[far], volume.array[far]), "voxels beyond the synthesis margin must not change"
    changed = out.array != volume.array
    assert changed[mask].mean() > 0.9, "the lesion itself is re-rendered"
    assert out.array.dtype == volume.array.dtype and volume.array is not out.array


def test_level_and_spread_follow_the_params_in_the_lesion_core():
    volume, mask = _site()
    core = td._core(mask, np.asarray(SPACING)[::-1])
    for mean, sd in ((-60.0, 40.0), (80.0, 150.0)):
        out = td.apply(volume, mask, td.DetailParams(mean, sd, 0.6), margin_mm=1.5, seed=1)
        values = out.array[core].astype(float)
        assert values.mean() == pytest.approx(mean, abs=3.0)
        # the noise has unit SD over the whole field; a fine grain gives the core nearly all of it
        assert values.std() == pytest.approx(sd, rel=0.15)


def test_a_coarse_grain_does_not_blow_up_the_lesion_rim():
    """The noise is scaled over the whole field, not over the core: scaled to a unit SD in a small core, a coarse
    grain's field was amplified everywhere and the rim got extreme values (shell SD 1.5 at 9 mm on this site)."""
    _, mask = _site()
    spacing = np.asarray(SPACING)[::-1]
    core = td._core(mask, spacing)
    shell = mask & ~core
    core_sd = []
    for grain in (0.6, 2.5, 4.0, 6.0, 9.0):
        fields = [td.noise_field(mask.shape, grain, spacing, np.random.default_rng(s), core) for s in range(4)]
        assert np.mean([f[shell].std() for f in fields]) <= 1.05, grain
        assert np.allclose([f[core].mean() for f in fields], 0.0, atol=1e-9), "the level stays the requested one"
        core_sd.append(np.mean([f[core].std() for f in fields]))
    assert all(b < a for a, b in zip(core_sd, core_sd[1:])), f"coarser grain, smoother core: {core_sd}"


def _texture(volume, mask):
    """The lesion's own texture as the stage judges it: its values beyond the edge trend."""
    spacing = np.asarray(SPACING)[::-1]
    return volume.array.astype(float) - td.edge_trend(volume.array, mask, spacing)


def test_a_request_of_what_is_already_there_adds_no_noise():
    """Asking for the lesion's own level and texture spread keeps its texture and adds no noise; only its soft
    edge trend (the codec's blur into lung) is replaced by the level."""
    volume, mask = _site()
    core = td._core(mask, np.asarray(SPACING)[::-1])
    own = _texture(volume, mask)[core]
    level = float(volume.array[core].mean())
    out = td.apply(volume, mask, td.DetailParams(level, float(own.std()), 0.6), margin_mm=1.5, seed=2)
    got = out.array[core].astype(float)
    assert np.abs((got - got.mean()) - (own - own.mean())).max() <= 1.0        # rounding only
    # a smoother request shrinks the lesion's own texture rather than adding noise
    smooth = td.apply(volume, mask, td.DetailParams(level, float(own.std()) / 2, 0.6), 1.5, seed=2)
    assert smooth.array[core].astype(float).std() == pytest.approx(own.std() / 2, rel=0.05)


def test_the_codec_soft_edge_is_replaced_by_the_level():
    """The toy lesion falls from +30 HU to lung across its outer 2 mm (a blurred edge); after the stage the mask's
    outermost voxels sit at the requested level, not half-way to lung."""
    volume, mask = _site()
    spacing = np.asarray(SPACING)[::-1]
    depth = ndimage.distance_transform_edt(mask, sampling=spacing)
    rim = mask & (depth <= 1.0)
    assert volume.array[rim].mean() < -200.0                 # the input's rim is half lung
    out = td.apply(volume, mask, td.DetailParams(30.0, 40.0, 1.0), margin_mm=1.5, seed=0)
    assert out.array[rim].astype(float).mean() == pytest.approx(30.0, abs=10.0)


def test_seeds_reproduce_and_differ():
    volume, mask = _site()
    params = td.DetailParams(0.0, 100.0, 1.0)
    a, b = (td.apply(volume, mask, params, 1.5, seed=5).array for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, td.apply(volume, mask, params, 1.5, seed=6).array)


def test_amplitude_and_grain_are_monotone_in_the_request():
    cal = _toy_calibration()
    sds = [td.invert(cal, e, 5.0)[0] for e in np.linspace(1.0, 4.5, 8)]
    assert all(b > a for a, b in zip(sds, sds[1:])), f"spread must rise with the requested entropy: {sds}"
    grains = [td.invert(cal, 4.0, c)[1] for c in np.linspace(5.0, 10.0, 6)]   # the range entropy 4 allows
    assert all(b < a for a, b in zip(grains, grains[1:])), f"grain must get finer with more contrast: {grains}"
    # beyond the table: clamped, never extrapolated
    assert td.invert(cal, 99.0, 1e6) == pytest.approx((max(td.SD_AXIS_HU), min(td.GRAIN_AXIS_MM)), rel=0.05)


def test_inverting_the_table_gives_back_its_axes():
    cal = _toy_calibration()
    for i in (3, 5, 7):
        for j in (1, 2, 3):
            sd, grain = td.invert(cal, cal.entropy[i, j], cal.contrast[i, j])
            assert sd == pytest.approx(cal.sd_hu[i], rel=0.03) and grain == pytest.approx(cal.grain_mm[j], rel=0.03)


def test_the_bundled_calibration_reproduces_its_fit_and_is_monotone():
    card = read_card(bundled("demo-tumor-bbdm"))
    entry = card[td.CARD_KEY]
    assert td.fit_table(entry["raw"]) == entry["table"], "the stored table is the fit of the stored measurements"
    assert entry["by"] == "scripts/calibrate_texture_detail.py" and entry["fit_on"] == list(td.FIT_ON)
    cal = td.calibration_from_card(card)
    log_grain = np.log(cal.grain_mm)
    normalizer = FeatureNormalizer.from_dict(card["features"])
    names = list(normalizer.names)
    scale = tuple(normalizer.std[names.index(n)] for n in (td.SPREAD, td.GRAIN))   # as tumor.fine_texture

    def rendered(entropy, contrast):   # what the table says the chosen (spread, grain) measures
        sd, grain = td.invert(cal, entropy, contrast, scale)
        return (float(td._bilinear(cal.entropy, cal.sd_hu, log_grain, np.array([sd]), np.log([grain]))[0, 0]),
                float(td._bilinear(cal.contrast, cal.sd_hu, log_grain, np.array([sd]), np.log([grain]))[0, 0]))

    # each slider across the training range, the other at the lung1 preset's value (as the panel sends them)
    entropy = [rendered(e, 37.0)[0] for e in np.linspace(1.04, 4.72, 7)]
    contrast = [rendered(4.57, c)[1] for c in np.linspace(0.27, 42.1, 7)]
    for name, got in (("entropy", entropy), ("contrast", contrast)):
        assert all(b >= a - 1e-6 for a, b in zip(got, got[1:])) and got[-1] > got[0] * 1.5, f"{name}: {got}"


def test_card_without_or_with_a_broken_calibration():
    assert td.calibration_from_card({}) is None            # the stage is skipped for such a model
    card = read_card(bundled("demo-tumor-bbdm"))
    broken = copy.deepcopy(card)
    broken[td.CARD_KEY]["table"]["entropy"] = broken[td.CARD_KEY]["table"]["entropy"][:-1]
    with pytest.raises(ModelError, match="inconsistent"):
        td.calibration_from_card(broken)
    with pytest.raises(ModelError, match="unreadable"):
        td.calibration_from_card({td.CARD_KEY: {"table": 3}})


def test_the_slider_verdict_reads_whole_lesion_and_interior():
    good = {"spearman": 0.96, "slope": 0.8, "interior_spearman": 0.93, "interior_slope": 0.7}
    assert follows(good) and verdict(good) == FOLLOWED
    assert verdict(dict(good, interior_slope=0.3)) == NOT_FOLLOWED     # interior flat: not followed
    assert verdict(dict(good, spearman=0.85)) == NOT_FOLLOWED          # below the 0.9 target
    assert verdict({"spearman": 1.0, "slope": 0.6}) == FOLLOWED         # an older record without the interior
    card = {SLIDER_EVALUATION: {"texture": {"a": good, "b": dict(good, slope=0.1)}}}
    assert list(unfollowed(card, ["a", "b"])) == ["b"]
