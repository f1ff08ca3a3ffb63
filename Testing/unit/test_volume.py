"""Reading/writing volumes: provenance in the NRRD header, geometry, dimensionality, CT check, mask resampling."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from radsynth.errors import InvalidImageError, InvalidMaskError
from radsynth.sample_data import sample_path
from radsynth.volume import (PROVENANCE_KEY, SYNTHETIC_KEY, Volume, check_ct, mask_on_grid, read_volume,
                             write_volume)

torch.set_num_threads(1)

OBLIQUE = (0.9396926, -0.3420201, 0.0, 0.3420201, 0.9396926, 0.0, 0.0, 0.0, 1.0)  # 20 deg about z


def _ct(shape=(6, 20, 24), direction=OBLIQUE) -> Volume:
    rng = np.random.default_rng(0)
    array = rng.integers(-1024, 2000, size=shape).astype(np.int16)
    return Volume(array, (-12.5, 30.25, 101.0), (0.7, 0.8, 5.0), direction)


def _nrrd_header(path) -> str:
    data = path.read_bytes()
    head, sep, _ = data.partition(b"\n\n")
    assert sep, "no blank line ends the NRRD header"
    return head.decode("ascii")


def test_synthetic_flag_survives_nrrd(tmp_path):
    vol = _ct()
    assert not vol.is_synthetic
    vol.mark_synthetic("texture model v1").mark_synthetic("seed 7")
    assert vol.is_synthetic
    path = tmp_path / "out.nrrd"
    write_volume(vol, path)
    assert [p.name for p in tmp_path.iterdir()] == ["out.nrrd"]  # no partial file left behind
    header = _nrrd_header(path)
    assert header.startswith("NRRD")
    assert "RadSynth.Synthetic:=1" in header.splitlines()
    assert "encoding: gzip" in header
    back = read_volume(path)
    assert back.is_synthetic
    assert back.metadata[SYNTHETIC_KEY] == "1"
    assert back.metadata[PROVENANCE_KEY] == "texture model v1; seed 7"


def test_unmarked_volume_has_no_flag(tmp_path):
    path = tmp_path / "plain.nrrd"
    write_volume(_ct(), path)
    assert SYNTHETIC_KEY not in _nrrd_header(path)
    assert not read_volume(path).is_synthetic


@pytest.mark.parametrize("name", ["v.nrrd", "v.nii.gz", "sub/dir/v.mha"])
def test_geometry_and_dtype_round_trip(tmp_path, name):
    vol = _ct()
    write_volume(vol, tmp_path / name)
    back = read_volume(tmp_path / name)
    assert back.array.dtype == np.int16
    assert np.array_equal(back.array, vol.array)
    assert back.same_grid(vol, tol=1e-4)
    assert np.allclose(back.direction, OBLIQUE, atol=1e-5)


def test_two_d_and_four_d_images_are_refused(tmp_path):
    two_d = sitk.GetImageFromArray(np.zeros((20, 30), np.int16))
    sitk.WriteImage(two_d, str(tmp_path / "slice.nrrd"))
    with pytest.raises(InvalidImageError, match="3D"):
        read_volume(tmp_path / "slice.nrrd")
    three = [sitk.GetImageFromArray(np.full((4, 5, 6), v, np.int16)) for v in range(3)]
    four_d = sitk.JoinSeries(three)
    assert four_d.GetDimension() == 4
    sitk.WriteImage(four_d, str(tmp_path / "series.nrrd"))
    with pytest.raises(InvalidImageError, match="3D"):
        read_volume(tmp_path / "series.nrrd")
    single = sitk.GetImageFromArray(np.zeros((1, 30, 30), np.int16))
    sitk.WriteImage(single, str(tmp_path / "one.nrrd"))
    with pytest.raises(InvalidImageError, match="3D"):
        read_volume(tmp_path / "one.nrrd")


def test_missing_and_unreadable_paths(tmp_path):
    with pytest.raises(InvalidImageError, match="not found"):
        read_volume(tmp_path / "nope.nrrd")
    (tmp_path / "junk.nrrd").write_bytes(b"this is not an image")
    with pytest.raises(InvalidImageError):
        read_volume(tmp_path / "junk.nrrd")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InvalidImageError, match="DICOM"):
        read_volume(tmp_path / "empty_dir")


def test_check_ct_on_real_scans():
    lung = read_volume(sample_path("lung1", "image"))
    check_ct(lung)
    brain = read_volume(sample_path("brain1", "image"))
    with pytest.raises(InvalidImageError, match="Hounsfield"):
        check_ct(brain)
    normalized = lung.with_array(((lung.array.astype(np.float32) + 1024) / 4095).clip(0, 1))
    with pytest.raises(InvalidImageError, match="Hounsfield"):
        check_ct(normalized)


def _grid(spacing, origin, shape) -> Volume:
    return Volume(np.zeros(shape, np.uint8), origin, spacing, (1, 0, 0, 0, 1, 0, 0, 0, 1))


def test_mask_on_coarser_shifted_grid_is_resampled():
    image = _grid((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), (30, 40, 40)).with_array(np.zeros((30, 40, 40), np.int16))
    coarse = _grid((2.0, 2.0, 2.0), (3.0, -5.0, 4.0), (15, 25, 25))
    arr = np.zeros((15, 25, 25), np.int16)
    arr[4:8, 6:10, 5:9] = 5  # label value other than 1, non-uint8
    coarse = coarse.with_array(arr)
    out = mask_on_grid(coarse, image)
    assert out.array.dtype == np.uint8 and set(np.unique(out.array)) == {0, 1}
    assert out.same_grid(image)
    # physical box covered by the coarse voxels [lo - 0.5, hi + 0.5] * 2 mm + origin, per axis (x, y, z)
    lo = np.array([3.0, -5.0, 4.0]) + (np.array([5, 6, 4]) - 0.5) * 2.0
    hi = np.array([3.0, -5.0, 4.0]) + (np.array([8, 9, 7]) + 0.5) * 2.0
    k, j, i = np.indices(image.shape)
    xyz = np.stack([i, j, k], -1).astype(float)  # identity geometry: index = mm
    well_in = np.all((xyz > lo + 0.6) & (xyz < hi - 0.6), -1)
    well_out = np.any((xyz < lo - 0.6) | (xyz > hi + 0.6), -1)
    assert np.all(out.array[well_in] == 1) and well_in.sum() > 100
    assert np.all(out.array[well_out] == 0)
    centroid = np.argwhere(out.array).mean(0)[::-1]
    assert np.allclose(centroid, (lo + hi) / 2, atol=0.6)


def test_mask_same_grid_and_errors():
    image = _ct()
    m = np.zeros(image.shape, np.uint8)
    m[2:4, 5:9, 5:9] = 1
    out = mask_on_grid(image.with_array(m), image)
    assert np.array_equal(out.array, m) and out.metadata == {}
    with pytest.raises(InvalidMaskError, match="empty"):
        mask_on_grid(image.with_array(np.zeros(image.shape, np.uint8)), image)
    far = Volume(m, (5000.0, 5000.0, 5000.0), image.spacing, image.direction)
    with pytest.raises(InvalidMaskError, match="outside"):
        mask_on_grid(far, image)


def test_dicom_series_folder(tmp_path):
    shape = (5, 16, 12)  # (k, j, i)
    spacing = (0.75, 0.6, 2.5)
    origin = (-10.0, 20.0, -40.0)
    rng = np.random.default_rng(1)
    array = rng.integers(-1000, 1500, size=shape).astype(np.int16)
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    folder = tmp_path / "dicom"
    folder.mkdir()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.42"
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(shape[0]):
        sl = img[:, :, z]
        pos = img.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in [("0008|0060", "CT"), ("0020|000e", series_uid),
                           ("0020|000d", "1.2.826.0.1.3680043.2.1125.1.41"),
                           ("0008|0018", f"{series_uid}.{z + 1}"),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in pos)),
                           ("0020|0013", str(z + 1)),
                           ("0028|0030", f"{spacing[1]}\\{spacing[0]}"),
                           ("0018|0050", str(spacing[2])),
                           ("0020|0037", "1\\0\\0\\0\\1\\0")]:
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(sl)
    (folder / "notes.txt").write_text("not DICOM")
    vol = read_volume(folder)
    assert vol.shape == shape
    assert np.allclose(vol.spacing, spacing, atol=1e-3)
    assert np.allclose(vol.origin, origin, atol=1e-3)
    assert np.array_equal(vol.array.astype(np.int32), array.astype(np.int32))


def test_a_single_slice_is_refused_unless_a_result_asks(tmp_path):
    v = Volume(np.zeros((1, 8, 8), np.int16), (0.0, 0.0, 0.0), (1.0, 1.0, 5.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_volume(v, tmp_path / "one.nrrd")
    with pytest.raises(InvalidImageError, match="single slice"):
        read_volume(tmp_path / "one.nrrd")
    assert read_volume(tmp_path / "one.nrrd", single_slice=True).shape == (1, 8, 8)
