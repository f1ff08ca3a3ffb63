"""The texture sliders move what they name: on a held-out lung region of the real CT, the bundled demo model's
achieved feature follows the requested one (the panel's slider → engine path: the three sliders set, the rest
filled; default guidance)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from radsynth.evaluate.heldout import heldout_regions
from radsynth.pipelines.loading import load_models
from radsynth.pipelines.texture_fill import TEXTURE_SLIDER_FEATURES
from radsynth.pipelines.tumor import MARGIN_MM, synthesize
from radsynth.radiomics import load_preset
from radsynth.region import blend_weight, extract
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume

torch.set_num_threads(1)
STEPS = 6


@pytest.fixture(scope="module")
def models():
    return load_models(device="cpu")


@pytest.fixture(scope="module")
def site():
    image = read_volume(sample_path("lung1"))
    mask = heldout_regions(image, 1, seed=11, diameter_mm=(20, 20))[0]
    return image, image.with_array(mask.astype(np.uint8))


def _achieved(models, site, feature, value) -> float:
    image, mask = site
    preset = load_preset("lung1-tumor")
    sliders = {f: preset[f] for f in TEXTURE_SLIDER_FEATURES}   # the panel sends all three, one of them moved
    res = synthesize(image, mask, models, target=preset, overrides=dict(sliders, **{feature: value}),
                     steps=STEPS, seed=0)
    return {name: got for name, _, got in res.features}[feature]


@pytest.mark.parametrize("feature, values, min_gain", [
    ("firstorder_Mean", (-150.0, 0.0, 150.0), 150.0),     # HU: at least 0.5 HU per HU (the target)
    ("firstorder_Entropy", (1.5, 3.0, 4.5), 1.5),         # bits: the fine-texture stage (texture_detail.py)
    ("glcm_Contrast", (5.0, 20.0, 40.0), 17.5),           # bins²
])
def test_a_slider_moves_its_feature_up(models, site, feature, values, min_gain):
    got = [_achieved(models, site, feature, v) for v in values]
    assert got[0] < got[1] < got[2], f"{feature}: requested {values}, achieved {got}"
    assert got[2] - got[0] >= min_gain, f"{feature}: requested {values}, achieved {got}"


def test_synthesis_sees_the_tissue_around_the_tumour(models, site, monkeypatch):
    """The bridge's source keeps the context outside the generated region (the mask and its one-voxel edge), as in
    training (a margin of 0 once blanked the whole crop: ``binary_dilation(iterations=0)`` dilates until nothing
    changes)."""
    image, mask = site
    sources = []
    encode = models.codec.encode
    monkeypatch.setattr(models.codec, "encode", lambda x: sources.append(x.numpy()[0, 0]) or encode(x))
    synthesize(image, mask, models, target=load_preset("lung1-tumor"), steps=2, seed=0)
    region = extract(image, mask.array > 0, models.spec)
    outside = blend_weight(region.mask, np.asarray(models.spec.spacing)[::-1], MARGIN_MM["synthesize"], 0) == 0
    assert np.array_equal(sources[0][outside], region.image[outside])
    assert outside.mean() > 0.9, "the generated region is the tumour and its edge, not the crop"
    assert not np.array_equal(sources[0][~outside], region.image[~outside])


def test_the_fine_texture_stage_changes_only_the_lesion_and_its_margin(models, site):
    """Same seed with and without the stage's calibration: the two results differ only within the synthesis margin
    of the mask (the stage never touches the rest), and inside it they do differ."""
    import dataclasses

    from radsynth import texture_detail as td
    image, mask = site
    target = load_preset("lung2-tumor")
    plain = dataclasses.replace(models, texture_card={k: v for k, v in models.texture_card.items()
                                                      if k != td.CARD_KEY})
    a = synthesize(image, mask, models, target=target, steps=2, seed=4)
    b = synthesize(image, mask, plain, target=target, steps=2, seed=4)
    assert a.settings["texture_detail"] is not None and b.settings["texture_detail"] is None
    dist = ndimage.distance_transform_edt(mask.array == 0, sampling=np.asarray(image.spacing)[::-1])
    far = dist > MARGIN_MM["synthesize"]
    assert np.array_equal(a.volume.array[far], b.volume.array[far])
    assert (a.volume.array[mask.array > 0] != b.volume.array[mask.array > 0]).mean() > 0.5
    again = synthesize(image, mask, models, target=target, steps=2, seed=4)
    assert np.array_equal(a.volume.array, again.volume.array), "a seed reproduces the result"
