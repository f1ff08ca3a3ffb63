"""RadSynthLib.dicom_plugin on real MRML (slicer-core): a synthetic volume node is claimed for DICOM export with the
synthetic tag set and written as a marked series; a real volume or a label map is left to Slicer's exporter."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
pydicom = pytest.importorskip("pydicom")

from RadSynthLib import dicom_plugin  # noqa: E402

from radsynth import mrml  # noqa: E402
from radsynth.geometry import rotation  # noqa: E402
from radsynth.volume import Volume, read_volume  # noqa: E402


def _ct(synthetic: bool) -> Volume:
    rng = np.random.default_rng(1)
    vol = Volume(rng.integers(-1000, 200, (5, 12, 14)).astype(np.int16), (3.0, -7.5, 40.0), (0.7, 0.7, 5.0),
                 tuple(rotation((1, 2, 0.5), 15).ravel()))
    return vol.mark_synthetic("radsynth tumor remove (demo-tumor-bbdm 0.3.0)") if synthetic else vol


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


def test_synthetic_volumes_are_claimed_with_the_synthetic_tags(scene):
    node = mrml.volume_to_node(_ct(True), scene, "lung2")
    tags = dicom_plugin.examine(node)
    assert tags["SyntheticData"] == "YES" and tags["ImageType"].startswith("DERIVED\\SECONDARY")
    assert "synthetic" in tags["SeriesDescription"].lower() and "remove" in tags["DerivationDescription"]
    assert dicom_plugin.CONFIDENCE > 0.5   # above Slicer's scalar-volume exporter, so the dialog picks this one


def test_real_volumes_and_label_maps_are_left_to_slicer(scene):
    assert dicom_plugin.examine(mrml.volume_to_node(_ct(False), scene, "lung1")) is None
    label = slicer.vtkMRMLLabelMapVolumeNode()
    scene.AddNode(label)
    assert dicom_plugin.examine(label) is None and dicom_plugin.examine(None) is None


def test_export_writes_a_marked_series_that_reads_back_marked(scene, tmp_path):
    vol = _ct(True)
    node = mrml.volume_to_node(vol, scene, "lung2")
    files = dicom_plugin.export_node(node, tmp_path / "series", {"PatientName": "Test^Reader",
                                                                 "SyntheticData": "NO"})   # cannot unmark
    assert len(files) == vol.shape[0]
    ds = pydicom.dcmread(files[0])
    assert ds[0x0008, 0x001C].value == "YES" and list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert str(ds.PatientName) == "Test^Reader" and "synthetic" in ds.SeriesDescription.lower()
    back = read_volume(tmp_path / "series")
    assert back.is_synthetic and np.array_equal(back.array, vol.array)

