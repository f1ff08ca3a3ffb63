"""The synthetic mark survives Slicer: real MRML storage nodes, volumes logic and scene bundles from slicer-core.

Every path is checked both ways: a synthetic volume stays marked, and a real one stays unmarked.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")

from radsynth import dicom_export, mrml, provenance  # noqa: E402
from radsynth.geometry import rotation  # noqa: E402
from radsynth.volume import PROVENANCE_KEY, SYNTHETIC_KEY, Volume, read_volume, write_volume  # noqa: E402

PROVENANCE = "radsynth tumor synthesize (demo-tumor-bbdm 0.3.0)"


def ct(synthetic: bool, seed: int = 0) -> Volume:
    """An int16 CT-like volume, 0.7 × 0.7 × 5 mm, oblique."""
    rng = np.random.default_rng(seed)
    vol = Volume(rng.integers(-1024, 2000, size=(6, 9, 11)).astype(np.int16), (12.5, -40.25, 101.0),
                 (0.7, 0.7, 5.0), tuple(rotation((1, 2, 0.5), 20).ravel()))
    return vol.mark_synthetic(PROVENANCE) if synthetic else vol


def save(node, path) -> None:
    """Save as Slicer's Save dialog does: a default storage node, its file name, WriteData."""
    if node.GetStorageNode() is None:
        assert node.AddDefaultStorageNode()
    storage = node.GetStorageNode()
    storage.SetFileName(str(path))
    assert storage.WriteData(node)


def add_data(scene, path, name):
    """Load as Slicer's Add Data does (volumes logic: read in a private scene, then move the nodes in)."""
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    logic = slicer.vtkSlicerVolumesLogic()
    logic.SetMRMLScene(scene)
    logic.SetMRMLApplicationLogic(app)
    node = logic.AddArchetypeVolume(str(path), name)
    assert node is not None
    return node


def header(path) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k) for k in reader.GetMetaDataKeys()}


@pytest.fixture
def watched(scene):
    watcher = provenance.watch_scene(scene)
    yield scene
    watcher.stop()


def same_image(path, vol: Volume) -> None:
    back = sitk.ReadImage(str(path))
    assert np.array_equal(sitk.GetArrayFromImage(back), vol.array)
    np.testing.assert_allclose(back.GetOrigin(), vol.origin, atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), vol.spacing, atol=1e-6)
    np.testing.assert_allclose(back.GetDirection(), vol.direction, atol=1e-6)


# -- saving: NRRD ---------------------------------------------------------------------------------------------------
def test_storage_node_alone_drops_the_mark(scene, tmp_path):
    """Why the watcher exists: MRML's NRRD writer keeps only its own fields."""
    node = mrml.volume_to_node(ct(True), scene, "out")
    save(node, tmp_path / "out.nrrd")
    assert "RadSynth.Synthetic" not in header(tmp_path / "out.nrrd")
    provenance.stamp_saved_node(node)           # what a module calls after a save it made itself
    assert header(tmp_path / "out.nrrd")[SYNTHETIC_KEY] == "1"


def test_saved_nrrd_keeps_the_mark(watched, tmp_path):
    vol = ct(True)
    node = mrml.volume_to_node(vol, watched, "lung1")
    assert node.GetName() == "lung1 - synthetic"
    path = tmp_path / "lung1 - synthetic.nrrd"
    save(node, path)
    assert b"RadSynth.Synthetic:=1" in path.read_bytes()[:4096]
    assert header(path)[PROVENANCE_KEY] == PROVENANCE
    same_image(path, vol)                       # stamping the header left voxels and geometry alone
    save(node, path)                            # saved again (overwrite): marked again, once
    assert path.read_bytes()[:4096].count(b"RadSynth.Synthetic:=1") == 1
    assert read_volume(path).is_synthetic


def test_saved_real_volume_stays_unmarked(watched, tmp_path):
    path = tmp_path / "real.nrrd"
    write_volume(ct(True, seed=1), path)        # an old synthetic file where the real one is saved
    node = mrml.volume_to_node(ct(False), watched, "real")
    save(node, path)
    assert not any(k.startswith("RadSynth") for k in header(path))
    assert not read_volume(path).is_synthetic and node.GetName() == "real"


def test_renaming_the_file_is_not_a_save(watched, tmp_path):
    """A file-name change raises the event a write does; the file it names must not be stamped."""
    node = mrml.volume_to_node(ct(True), watched, "out")
    save(node, tmp_path / "a.nrrd")
    other = tmp_path / "other.nrrd"
    write_volume(ct(False, seed=2), other)
    node.GetStorageNode().SetFileName(str(other))
    assert provenance.read_file_mark(other) == {}
    assert node.GetStorageNode().WriteData(node)
    assert provenance.read_file_mark(other)[SYNTHETIC_KEY] == "1"


def test_stamp_nrrd_detached_header(tmp_path):
    path = tmp_path / "v.nhdr"
    write_volume(ct(False), path)
    assert provenance.stamp_nrrd(path, ct(True).metadata)
    assert not provenance.stamp_nrrd(path, ct(True).metadata)      # already there: the file is left alone
    assert read_volume(path).is_synthetic and np.array_equal(read_volume(path).array, ct(False).array)
    provenance.stamp_file(path, {})
    assert not read_volume(path).is_synthetic


# -- saving: NIfTI ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_saved_nifti_gets_descrip_and_sidecar(watched, tmp_path, suffix):
    vol = ct(True)
    node = mrml.volume_to_node(vol, watched, "out")
    path = tmp_path / f"out{suffix}"
    save(node, path)
    side = provenance.sidecar_path(path)
    assert side.name == f"out{suffix}.radsynth.json"
    content = json.loads(side.read_text())
    assert content[SYNTHETIC_KEY] == "1" and content[PROVENANCE_KEY] == PROVENANCE and content["image"] == path.name
    assert header(path)["descrip"].startswith(provenance.NIFTI_DESCRIP_PREFIX)
    same_image(path, vol)
    assert read_volume(path).metadata[PROVENANCE_KEY] == PROVENANCE
    side.unlink()                               # the sidecar got lost: the descrip still says synthetic
    assert read_volume(path).is_synthetic


def test_saved_real_nifti_removes_a_stale_sidecar(watched, tmp_path):
    path = tmp_path / "ct.nii.gz"
    write_volume(ct(True), path)
    assert provenance.sidecar_path(path).exists()
    save(mrml.volume_to_node(ct(False), watched, "real"), path)
    assert not provenance.sidecar_path(path).exists()
    assert provenance.read_file_mark(path) == {} and not read_volume(path).is_synthetic


def test_write_volume_sidecars_are_per_file(tmp_path):
    write_volume(ct(True), tmp_path / "a.nii")
    write_volume(ct(True), tmp_path / "a.mha")
    write_volume(ct(False), tmp_path / "a.nii.gz")      # same stem, real: must not unmark the others
    assert read_volume(tmp_path / "a.nii").is_synthetic and read_volume(tmp_path / "a.mha").is_synthetic
    assert not read_volume(tmp_path / "a.nii.gz").is_synthetic


# -- loading ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_add_data_marks_the_loaded_node(watched, tmp_path, suffix):
    path = tmp_path / f"result{suffix}"
    write_volume(ct(True), path)
    node = add_data(watched, path, "result")
    assert node.GetAttribute(SYNTHETIC_KEY) == "1" and node.GetAttribute(PROVENANCE_KEY) == PROVENANCE
    assert node.GetName() == "result - synthetic"
    assert mrml.volume_from_node(node).is_synthetic


def test_add_data_leaves_a_real_file_unmarked(watched, tmp_path):
    path = tmp_path / "real.nrrd"
    write_volume(ct(False), path)
    node = add_data(watched, path, "real")
    assert node.GetAttribute(SYNTHETIC_KEY) is None and node.GetName() == "real"


def test_mark_loaded_node_without_a_watcher(scene, tmp_path):
    path = tmp_path / "result.nrrd"
    write_volume(ct(True), path)
    node = add_data(scene, path, "result")
    assert node.GetAttribute(SYNTHETIC_KEY) is None          # MRML alone reads no mark
    assert provenance.mark_loaded_node(node)
    assert node.GetAttribute(SYNTHETIC_KEY) == "1" and node.GetName() == "result - synthetic"
    real = tmp_path / "real.nrrd"
    write_volume(ct(False), real)
    real_node = add_data(scene, real, "real")
    assert not provenance.mark_loaded_node(real_node) and real_node.GetName() == "real"


def test_reading_into_a_node_in_the_scene_marks_it(watched, tmp_path):
    """Scene loading and Reload read through a storage node that is already in the scene."""
    path = tmp_path / "result.nrrd"
    write_volume(ct(True), path)
    node = slicer.vtkMRMLScalarVolumeNode()
    node.SetName("reloaded")
    watched.AddNode(node)
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    watched.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    assert node.GetAttribute(SYNTHETIC_KEY) == "1" and node.GetName() == "reloaded - synthetic"


def test_stopped_watcher_does_nothing(scene, tmp_path):
    watcher = provenance.watch_scene(scene)
    watcher.stop()
    node = mrml.volume_to_node(ct(True), scene, "out")
    save(node, tmp_path / "out.nrrd")
    assert SYNTHETIC_KEY not in header(tmp_path / "out.nrrd")


# -- scenes: .mrb and .mrml ---------------------------------------------------------------------------------------
def test_mrb_round_trip(watched, tmp_path):
    synthetic = mrml.volume_to_node(ct(True), watched, "lung1")
    mrml.volume_to_node(ct(False, seed=3), watched, "lung1 real")
    app = slicer.vtkMRMLApplicationLogic()
    app.SetMRMLScene(watched)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    assert app.SaveSceneToSlicerDataBundleDirectory(str(bundle), None)
    mrb = tmp_path / "scene.mrb"
    assert app.Zip(str(mrb), str(bundle))
    assert synthetic.GetAttribute(SYNTHETIC_KEY) == "1"

    # the volume files inside the bundle carry the mark themselves (a reader that ignores the scene XML sees it)
    unzipped = tmp_path / "unzipped"
    with zipfile.ZipFile(mrb) as z:
        names = z.namelist()
        z.extractall(unzipped)
    data = {p.name: p for p in unzipped.rglob("*.nrrd")}
    assert set(data) == {"lung1 - synthetic.nrrd", "lung1 real.nrrd"}, names
    assert header(data["lung1 - synthetic.nrrd"])[SYNTHETIC_KEY] == "1"
    assert not any(k.startswith("RadSynth") for k in header(data["lung1 real.nrrd"]))
    mrml_text = next(unzipped.rglob("*.mrml")).read_text()
    assert "RadSynth.Synthetic:1" in mrml_text

    # opened again in a new scene (as Slicer opens a .mrb)
    for watch in (False, True):
        scene2 = slicer.vtkMRMLScene()
        watcher = provenance.watch_scene(scene2) if watch else None
        app2 = slicer.vtkMRMLApplicationLogic()
        app2.SetMRMLScene(scene2)
        (tmp_path / f"open{watch}").mkdir()
        assert app2.OpenSlicerDataBundle(str(mrb), str(tmp_path / f"open{watch}"))
        nodes = {n.GetName(): n for n in (scene2.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                                          for i in range(scene2.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))}
        assert set(nodes) == {"lung1 - synthetic", "lung1 real"}
        assert nodes["lung1 - synthetic"].GetAttribute(PROVENANCE_KEY) == PROVENANCE
        assert mrml.volume_from_node(nodes["lung1 - synthetic"]).is_synthetic
        assert nodes["lung1 real"].GetAttribute(SYNTHETIC_KEY) is None
        if watcher:
            watcher.stop()


def test_scene_file_without_attributes_is_marked_from_the_volume_file(watched, tmp_path):
    """A .mrml + files round trip where the scene XML lost the attributes (edited, or written by another tool):
    the watcher marks the node again from its volume file."""
    node = mrml.volume_to_node(ct(True), watched, "lung1")
    save(node, tmp_path / "lung1 - synthetic.nrrd")
    mrml.volume_to_node(ct(False), watched, "real")
    save(watched.GetFirstNodeByName("real"), tmp_path / "real.nrrd")
    scene_file = tmp_path / "scene.mrml"
    watched.SetURL(str(scene_file))
    assert watched.Commit()
    text = scene_file.read_text()
    assert "RadSynth.Synthetic:1" in text
    scene_file.write_text(text.replace("RadSynth.Synthetic:1", "").replace(f"RadSynth.Provenance:{PROVENANCE}", ""))
    scene2 = slicer.vtkMRMLScene()
    watcher = provenance.watch_scene(scene2)
    scene2.SetURL(str(scene_file))
    assert scene2.Connect()
    loaded = scene2.GetFirstNodeByName("lung1 - synthetic")
    assert loaded is not None and loaded.GetAttribute(SYNTHETIC_KEY) == "1"
    assert loaded.GetAttribute(PROVENANCE_KEY) == PROVENANCE
    assert scene2.GetFirstNodeByName("real").GetAttribute(SYNTHETIC_KEY) is None
    watcher.stop()


# -- DICOM export -------------------------------------------------------------------------------------------------
def test_exportable_tags_for_slicer():
    tags = dicom_export.exportable_tags("lung1 - synthetic", ct(True).metadata)
    assert tags == {"SeriesDescription": "lung1 - synthetic", "ImageType": "DERIVED\\SECONDARY\\AXIAL",
                    "SyntheticData": "YES", "DerivationDescription": PROVENANCE}
    assert dicom_export.exportable_tags("lung1", ct(True).metadata)["SeriesDescription"] == "lung1 - SYNTHETIC"
    real = dicom_export.exportable_tags("lung1", ct(False).metadata)
    assert real == {"SeriesDescription": "lung1", "SyntheticData": "NO"}
    long = dicom_export.synthetic_series_description("x" * 100)
    assert len(long) == 64 and long.endswith(" - SYNTHETIC")


def test_dicom_export_of_a_synthetic_node(scene, tmp_path):
    pydicom = pytest.importorskip("pydicom")
    vol = ct(True)
    node = mrml.volume_to_node(vol, scene, "lung1")
    files = dicom_export.write_node_series(node, tmp_path / "dicom",
                                           tags={"PatientName": "Test^Patient", "ImageType": "ORIGINAL\\PRIMARY",
                                                 "SyntheticData": "NO"})   # cannot be unmarked by tags
    assert len(files) == vol.shape[0]
    back = read_volume(tmp_path / "dicom")                    # SimpleITK / GDCM series reader
    assert np.array_equal(back.array, vol.array)
    np.testing.assert_allclose(back.origin, vol.origin, atol=1e-5)
    np.testing.assert_allclose(back.spacing, vol.spacing, atol=1e-5)
    np.testing.assert_allclose(back.direction, vol.direction, atol=1e-6)
    assert back.is_synthetic and back.metadata[PROVENANCE_KEY] == PROVENANCE
    gdcm = header(files[0])
    assert gdcm["0008|001c"].strip() == "YES" and gdcm["0008|0008"].strip().startswith("DERIVED\\SECONDARY")
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds[0x0008, 0x001C].value == "YES" and ds[0x0008, 0x001C].VR == "CS"   # Synthetic Data
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "synthetic" in ds.SeriesDescription.lower() and ds.DerivationDescription == PROVENANCE
        assert str(ds.PatientName) == "Test^Patient" and ds.Modality == "CT"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert len({pydicom.dcmread(p).SOPInstanceUID for p in files}) == len(files)
    assert len({pydicom.dcmread(p).SeriesInstanceUID for p in files}) == 1
    # Slicer's DICOM loader reads the first file through the storage node: the node is marked on load
    loaded = add_data(scene, files[0], "from dicom")
    assert provenance.mark_loaded_node(loaded) and loaded.GetName() == "from dicom - synthetic"


def test_dicom_export_of_a_real_volume_stays_unmarked(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    files = dicom_export.write_dicom_series(ct(False), tmp_path / "dicom", name="lung1")
    back = read_volume(tmp_path / "dicom")
    assert not back.is_synthetic and back.metadata == {}
    ds = pydicom.dcmread(files[0])
    assert ds[0x0008, 0x001C].value == "NO" and "synthetic" not in ds.SeriesDescription.lower()
    assert "DerivationDescription" not in ds
    assert provenance.read_file_mark(tmp_path / "dicom") == {}


def test_only_volumes_are_stamped(watched, tmp_path):
    """A table with a RadSynth attribute (the texture source) is saved as it is: no sidecar, no rewrite."""
    table = mrml.features_to_table_node([("original_firstorder_Mean", -20.0, -18.0)], watched, "features")
    table.SetAttribute("RadSynth.TextureSource", "lung1 tumour")
    assert table.AddDefaultStorageNode()
    table.GetStorageNode().SetFileName(str(tmp_path / "features.tsv"))
    assert table.GetStorageNode().WriteData(table)
    assert sorted(p.name for p in tmp_path.iterdir() if "radsynth" in p.name) == []
