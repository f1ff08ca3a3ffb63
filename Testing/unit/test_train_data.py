"""Training-data layouts (NSCLC pairs, KiTS23, BraTS) and procedural lesion shapes."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from radsynth.errors import RadSynthError
from radsynth.train.data import cases_from_folder, lesion_mask, load_case
from radsynth.sample_data import sample_path
from radsynth.train.vqgan import DEFAULT_SPEC, random_batch


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing((1.5, 1.5, 1.5))
    sitk.WriteImage(img, str(path))


def _label():
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    lab[6:9, 6:9, 6:9] = 2
    lab[9, 9, 9] = 4
    return lab


@pytest.mark.parametrize("layout, expected_labels, expected_voxels", [
    ("pairs", (1,), 27), ("kits23", (2,), 27), ("brats", (1, 4), 28)])
def test_layouts_are_found_with_their_tumour_labels(tmp_path, layout, expected_labels, expected_voxels):
    image = np.full((12, 12, 12), -1000, np.int16)
    if layout == "pairs":
        _write(tmp_path / "images" / "c1.nii.gz", image)
        _write(tmp_path / "labels" / "c1.nii.gz", _label())
    elif layout == "kits23":
        _write(tmp_path / "case_00000" / "imaging.nii.gz", image)
        _write(tmp_path / "case_00000" / "segmentation.nii.gz", _label())
    else:
        _write(tmp_path / "BraTS2021_00000" / "BraTS2021_00000_t1ce.nii.gz", image)
        _write(tmp_path / "BraTS2021_00000" / "BraTS2021_00000_seg.nii.gz", _label())
    cases = cases_from_folder(tmp_path)
    assert len(cases) == 1 and cases[0][3] == expected_labels
    assert load_case(*cases[0], DEFAULT_SPEC).tumor.sum() == expected_voxels


def test_empty_folder_is_a_clear_error(tmp_path):
    with pytest.raises(RadSynthError, match="No cases found"):
        cases_from_folder(tmp_path)


def test_lesion_masks_are_single_blobs_of_the_requested_size():
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = lesion_mask(64, 1.5, rng, diameter_mm=(20.0, 20.0))
        assert ndimage.label(m)[1] == 1
        extent_mm = (np.ptp(np.argwhere(m), axis=0) + 1) * 1.5
        assert 8.0 < extent_mm.max() < 30.0


def test_codec_batches_mark_the_lesions_the_roi_loss_weighs():
    """VQ-GAN batches: real-tumour and procedural-tumour crops carry their lesion mask (soft-tissue values inside,
    in lung), plain crops an empty one."""
    case = load_case("lung1", sample_path("lung1", "image"), sample_path("lung1", "label"), (1,), DEFAULT_SPEC)
    x, roi = random_batch([case], 24, 32, DEFAULT_SPEC, np.random.default_rng(0))
    assert x.shape == roi.shape == (24, 1, 32, 32, 32)
    hu = DEFAULT_SPEC.denormalize(x.numpy())
    lesion = roi.numpy() > 0
    with_roi = lesion.reshape(24, -1).any(1)
    assert 4 <= with_roi.sum() <= 20, "about 60 % of crops should hold a lesion"
    assert hu[lesion].mean() > -300.0 and set(np.unique(roi.numpy())) <= {0.0, 1.0}
