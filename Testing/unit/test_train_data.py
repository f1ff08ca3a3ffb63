"""Training-data layouts (NSCLC pairs, KiTS23, BraTS) and procedural lesion shapes."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from radsynth.errors import RadSynthError
from radsynth.train.data import cases_from_folder, lesion_mask, load_case
from radsynth.train.vqgan import DEFAULT_SPEC


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
