"""Move / resize / retexture / place on the real lung1 CT with the bundled demo models (few steps, for speed)."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from radsynth.errors import InvalidMaskError, RadSynthError
from radsynth.evaluate.heldout import ellipsoid, heldout_regions
from radsynth.pipelines import manipulate
from radsynth.pipelines.loading import load_models
from radsynth.radiomics import load_preset
from radsynth.sample_data import sample_path
from radsynth.shape_features import fast_shape_features
from radsynth.volume import read_volume

torch.set_num_threads(1)
STEPS = 4
REACH_MM = 6.0  # margin + feather of the pipeline


@pytest.fixture(scope="module")
def models():
    return load_models(device="cpu")


@pytest.fixture(scope="module")
def lung1():
    return read_volume(sample_path("lung1"))


@pytest.fixture(scope="module")
def tumor(lung1):
    mask = heldout_regions(lung1, 1, seed=5, diameter_mm=(18, 18))[0]
    return lung1.with_array(mask.astype(np.uint8))


def _far_from(image, mask):
    """Voxels farther than the blend reach from ``mask``: these must stay bit-identical."""
    dist = ndimage.distance_transform_edt(~mask.astype(bool), sampling=np.asarray(image.spacing)[::-1])
    return dist > REACH_MM + 1e-6


def _volume_ml(image, mask):
    return fast_shape_features(mask, np.asarray(image.spacing)[::-1])["shape_VoxelVolume"] / 1000.0


def test_move_keeps_everything_else_and_moves_the_shape(lung1, tumor, models):
    shift = (0.0, 12.0, 0.0)
    res = manipulate.move(lung1, tumor, shift, models=models, steps=STEPS)
    old = tumor.array > 0
    new = res.mask.array > 0
    assert res.volume.is_synthetic and res.operation == "move"
    assert abs(int(new.sum()) - int(old.sum())) < 0.15 * old.sum()
    expected_shift_vox = shift[1] / lung1.spacing[1]
    com_old, com_new = ndimage.center_of_mass(old), ndimage.center_of_mass(new)
    assert abs((com_new[1] - com_old[1]) - expected_shift_vox) < 1.0
    untouched = _far_from(lung1, old | new)
    assert np.array_equal(res.volume.array[untouched], lung1.array[untouched])
    assert not np.array_equal(res.volume.array[old & ~new], lung1.array[old & ~new])
    assert res.features is not None and "remove.sample" in res.timings


def test_resize_hits_requested_volume(lung1, tumor, models):
    before = _volume_ml(lung1, tumor.array)
    res = manipulate.resize(lung1, tumor, volume_ml=2.0 * before, models=models, steps=STEPS)
    after = _volume_ml(lung1, res.mask.array)
    assert after == pytest.approx(2.0 * before, rel=0.02)
    untouched = _far_from(lung1, (tumor.array > 0) | (res.mask.array > 0))
    assert np.array_equal(res.volume.array[untouched], lung1.array[untouched])


def test_retexture_keeps_the_mask(lung1, tumor, models):
    res = manipulate.retexture(lung1, tumor, load_preset("lung2-tumor"), models=models, steps=STEPS)
    assert np.array_equal(res.mask.array > 0, tumor.array > 0)
    assert res.operation == "retexture" and len(res.features) == len(models.normalizer.names)


def test_place_at_point_with_generated_shape(lung1, tumor, models):
    idx = np.argwhere(tumor.array > 0).mean(0)
    point = lung1.index_to_physical(idx[None])[0]
    res = manipulate.place(lung1, load_preset("lung1-tumor"), point_lps=point,
                           shape_features={"volume_ml": 3.0, "shape_Sphericity": 0.8}, models=models, steps=STEPS)
    assert _volume_ml(lung1, res.mask.array) == pytest.approx(3.0, rel=0.2)
    com = np.asarray(ndimage.center_of_mass(res.mask.array > 0))
    assert np.linalg.norm((com - idx) * np.asarray(lung1.spacing)[::-1]) < 6.0


def test_refusals_change_nothing(lung1, tumor, models):
    before = lung1.array.copy()
    other = lung1.with_array(ellipsoid(lung1, np.argwhere(tumor.array > 0).mean(0) + [0, 20, 0],
                                       np.array([6.0, 6.0, 6.0])).astype(np.uint8))
    with pytest.raises(InvalidMaskError, match="overlaps another tumour"):
        manipulate.move(lung1, tumor, (0.0, 20 * lung1.spacing[1], 0.0), others=[other], models=models)
    with pytest.raises(RadSynthError, match="positive"):
        manipulate.resize(lung1, tumor, volume_ml=-1.0, models=models)
    with pytest.raises(InvalidMaskError, match="empty"):
        manipulate.move(lung1, lung1.with_array(np.zeros(lung1.shape, np.uint8)), (1, 0, 0), models=models)
    with pytest.raises(RadSynthError):
        manipulate.place(lung1, load_preset("lung1-tumor"), point_lps=(1e4, 1e4, 1e4),
                         shape_features={"volume_ml": 3.0}, models=models)
    assert np.array_equal(lung1.array, before)
