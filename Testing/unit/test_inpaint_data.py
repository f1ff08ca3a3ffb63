"""Training masks and slices for the inpainting models, and the data preparers on miniature folders in the real
LUNA16 / LIDC-IDRI, TotalSegmentator and KiTS23 layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from radsynth.errors import RadSynthError
from radsynth.pipelines.inpaint import labels as L
from radsynth.train import inpaint_data as D
from radsynth.train import prepare_lidc, prepare_organs
from radsynth.volume import Volume, read_volume, write_volume


def _chest(direction_x: float = 1.0) -> Volume:
    """A 24 × 96 × 96 chest phantom at 3 × 3 × 5 mm: body, two lungs (right larger), a trachea above the carina."""
    nk, nj, ni = 24, 96, 96
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    a = np.full((nk, nj, ni), -1000.0)
    a[((j - 48) / 40) ** 2 + ((i - 48) / 44) ** 2 < 1] = 40.0
    a[(((k - 9) / 9) ** 2 + ((j - 50) / 24) ** 2 + ((i - 30) / 16) ** 2 < 1)] = -850.0
    a[(((k - 9) / 8) ** 2 + ((j - 50) / 22) ** 2 + ((i - 65) / 14) ** 2 < 1)] = -850.0
    a[(k >= 15) & ((j - 52) ** 2 + (i - 48) ** 2 <= 9)] = -1000.0
    spacing = (3.0, 3.0, 5.0)
    if direction_x < 0:
        a = a[:, :, ::-1].copy()
        return Volume(a.astype(np.int16), ((ni - 1) * 3.0 - 150.0, -150.0, -100.0), spacing,
                      (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return Volume(a.astype(np.int16), (-150.0, -150.0, -100.0), spacing, (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def _add_sphere(ct: Volume, center_lps, radius_mm: float, hu: float) -> np.ndarray:
    kji = np.indices(ct.shape).reshape(3, -1).T
    d = np.linalg.norm(ct.index_to_physical(kji) - np.asarray(center_lps), axis=1).reshape(ct.shape)
    ct.array[d <= radius_mm] = hu
    return d <= radius_mm


# -- masks ----------------------------------------------------------------------------------------------------------
def test_random_and_lesion_masks():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = D.random_mask(64, rng)
        assert 0.05 <= m.mean() <= 0.4
    sizes = []
    for _ in range(30):
        m = D.lesion_mask(64, 1.0, rng, diameter_mm=(8.0, 30.0))
        assert ndimage.label(m)[1] == 1 and not ndimage.binary_fill_holes(m)[~m].any()
        sizes.append(2 * np.sqrt(m.sum() / np.pi))
        assert m.mean() <= 1 - D.MIN_CONTEXT
    assert 5 < min(sizes) and max(sizes) < 34 and np.std(sizes) > 2      # varied, within the diameters asked


def test_organ_masks_grow_box_and_refuse():
    lab = np.zeros((64, 64), np.uint8)
    lab[20:30, 20:34] = L.LEFT_LUNG
    rng = np.random.default_rng(1)
    grown = D.organ_mask(lab, L.LEFT_LUNG, 1.0, rng, grow_mm=(3.0, 3.0))
    assert grown[lab == L.LEFT_LUNG].all() and grown.sum() > (lab == L.LEFT_LUNG).sum()
    assert not grown[15, 27] and grown[18, 27]
    boxed = D.organ_mask(lab, L.LEFT_LUNG, 1.0, rng, grow_mm=(2.0, 2.0), boxed=True)
    assert boxed[18:32, 18:36].all() and boxed.sum() == 14 * 18
    assert D.organ_mask(lab, L.NODULE, 1.0, rng) is None
    assert D.organ_mask(np.full((8, 8), L.BODY, np.uint8), L.BODY, 1.0, rng) is None   # no context left


def test_training_slices_and_neighbours():
    from radsynth.pipelines.inpaint.auto_map import auto_map
    ct = _chest()
    vol = D.slice_volume("chest", ct, auto_map(ct).map, 3.0, (-1000.0, 400.0))
    assert vol.image.shape == ct.shape and vol.image.min() >= -1 and vol.image.max() <= 1
    rng = np.random.default_rng(2)
    b = D.batch([vol], 24, 32, rng, organ_values=(L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA))
    assert b["image"].shape == (24, 1, 32, 32) == b["mask"].shape == b["neighbour"].shape
    assert b["labels"].shape == (24, 32, 32)
    assert set(b["kinds"]) == set(D.MASK_KINDS)
    cover = b["mask"].mean(axis=(1, 2, 3))
    assert (cover > 0).all() and (cover <= 1 - D.MIN_CONTEXT).all()
    # each neighbour is the same crop on the slice above or below
    for n in range(24):
        _, k, nk, cy, cx = b["where"][n]
        assert abs(nk - k) == 1 and 1 <= k < ct.shape[0] - 1
        assert np.array_equal(b["image"][n, 0], D._crop(vol.image, k, cy, cx, 32, -1.0))
        assert np.array_equal(b["neighbour"][n, 0], D._crop(vol.image, nk, cy, cx, 32, -1.0))
        assert vol.body[k, cy, cx]
    organ = [n for n in range(24) if b["kinds"][n] == "organ"]
    for n in organ:
        assert np.isin(b["labels"][n][b["mask"][n, 0] > 0], (L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA)).any()


def test_healthy_draws_can_keep_nodules_out_of_the_context():
    """A healthy-fill model's crops never show a labelled nodule, on their slice or the neighbour slice, when asked."""
    from radsynth.pipelines.inpaint.auto_map import auto_map
    ct = _chest()
    nodule = _add_sphere(ct, (-60.0, -0.0, -55.0), 8.0, 30.0)
    labels = auto_map(ct).map
    labels.array[nodule] = L.NODULE
    vol = D.slice_volume("chest", ct, labels, 3.0, (-1000.0, 400.0))
    draw = dict(organ_values=(L.LEFT_LUNG, L.RIGHT_LUNG), lung_values=(L.LEFT_LUNG, L.RIGHT_LUNG),
                avoid_values=L.NODULES)
    seen = D.batch([vol], 48, 32, np.random.default_rng(4), **draw)
    assert any(np.isin(lab, L.NODULES).any() for lab in seen["labels"]), "without it the nodule shows as context"
    clean = D.batch([vol], 48, 32, np.random.default_rng(4), avoid_in_context=True, **draw)
    for n in range(48):
        _, k, nk, cy, cx = clean["where"][n]
        assert not np.isin(clean["labels"][n], L.NODULES).any()
        assert not np.isin(D._crop(vol.labels, nk, cy, cx, 32, 0), L.NODULES).any()


# -- LUNA16 / LIDC-IDRI ---------------------------------------------------------------------------------------------
UID_A, UID_B, UID_C = "1.3.6.1.4.1.14519.5.2.1.6279.6001.100", "1.3.6.1.4.1.14519.5.2.1.6279.6001.200", "1.3.6.9.999"


def _xml(uid: str, readers: list[list[tuple[int | None, float, float, float]]]) -> str:
    """LIDC reader XML: per reader, nodules (malignancy or None for a < 3 mm nodule, z, pixel x, pixel y)."""
    sessions = []
    for nods in readers:
        body = []
        for n, (mal, z, x, y) in enumerate(nods):
            chars = (f"<characteristics><subtlety>4</subtlety><malignancy>{mal}</malignancy></characteristics>"
                     if mal is not None else "")
            edges = "".join(f"<edgeMap><xCoord>{x + dx}</xCoord><yCoord>{y + dy}</yCoord></edgeMap>"
                            for dx, dy in ((-2, 0), (2, 0), (0, -2), (0, 2)))
            rois = "".join(f"<roi><imageZposition>{z + dz}</imageZposition><imageSOP_UID>1.2.{n}</imageSOP_UID>"
                           f"<inclusion>TRUE</inclusion>{edges}</roi>" for dz in (-2.5, 0.0, 2.5))
            body.append(f"<unblindedReadNodule><noduleID>{n}</noduleID>{chars}{rois}</unblindedReadNodule>")
        body.append("<nonNodule><nonNoduleID>9</nonNoduleID><imageZposition>0</imageZposition>"
                    "<locus><xCoord>1</xCoord><yCoord>1</yCoord></locus></nonNodule>")
        sessions.append(f"<readingSession><annotationVersion>3.12</annotationVersion>{''.join(body)}</readingSession>")
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<LidcReadMessage xmlns="http://www.nih.gov" uid="1">'
            f"<ResponseHeader><Version>1.8.1</Version><SeriesInstanceUid>{uid}</SeriesInstanceUid></ResponseHeader>"
            f"{''.join(sessions)}</LidcReadMessage>")


@pytest.fixture(scope="module")
def luna(tmp_path_factory):
    root = tmp_path_factory.mktemp("LUNA16")
    a = _chest(direction_x=-1.0)                       # mirrored storage: positions must follow the direction
    right_centre = tuple(a.index_to_physical(np.array([[8, 50, 95 - 30]]))[0])   # in the patient's right lung
    left_centre = tuple(a.index_to_physical(np.array([[10, 50, 95 - 65]]))[0])
    dense_r = _add_sphere(a, right_centre, 6.0, 50.0)
    dense_l = _add_sphere(a, left_centre, 4.5, 30.0)
    (root / "subset0").mkdir()
    (root / "subset3").mkdir()
    write_volume(a, root / "subset0" / f"{UID_A}.mhd")
    seg = np.zeros(a.shape, np.uint8)
    chest_plain = _chest()
    seg_plain = np.zeros(a.shape, np.uint8)
    k, j, i = np.meshgrid(*[np.arange(s) for s in a.shape], indexing="ij")
    seg_plain[(((k - 9) / 9) ** 2 + ((j - 50) / 24) ** 2 + ((i - 30) / 16) ** 2 < 1)] = 4   # right lung
    seg_plain[(((k - 9) / 8) ** 2 + ((j - 50) / 22) ** 2 + ((i - 65) / 14) ** 2 < 1)] = 3   # left lung
    seg_plain[(k >= 15) & ((j - 52) ** 2 + (i - 48) ** 2 <= 9)] = 5
    seg[:] = seg_plain[:, :, ::-1]
    (root / "seg-lungs-LUNA16").mkdir()
    write_volume(a.label_like(seg), root / "seg-lungs-LUNA16" / f"{UID_A}.mhd")
    b = _chest()
    centre_b = tuple(b.index_to_physical(np.array([[9, 50, 66]]))[0])
    dense_b = _add_sphere(b, centre_b, 5.0, 40.0)
    write_volume(b, root / "subset3" / f"{UID_B}.mhd")
    rows = ["seriesuid,coordX,coordY,coordZ,diameter_mm",
            f"{UID_A},{right_centre[0]},{right_centre[1]},{right_centre[2]},14.0",
            f"{UID_A},{left_centre[0]},{left_centre[1]},{left_centre[2]},11.0",
            f"{UID_B},{centre_b[0]},{centre_b[1]},{centre_b[2]},12.0",
            f"{UID_C},0,0,0,5.0"]
    (root / "annotations.csv").write_text("\n".join(rows) + "\n")
    # readers' pixel positions: (column i, row j) in the stored grid, z in mm
    ri, li = 95 - 30, 95 - 65
    zr, zl = right_centre[2], left_centre[2]
    readers = [[(4, zr, ri, 50), (2, zl, li, 50)], [(4, zr, ri + 1, 51), (1, zl, li, 49)], [(3, zr, ri, 50)],
               [(None, zr, ri, 50), (5, -400.0, 10, 10)]]    # a < 3 mm nodule (no rating) and one far away
    xml_dir = root / "LIDC-XML-only" / "tcia-lidc-xml" / "185"
    xml_dir.mkdir(parents=True)
    (xml_dir / "068.xml").write_text(_xml(UID_A, readers))
    (xml_dir / "069.xml").write_text("not xml at all")
    out = tmp_path_factory.mktemp("prepared")
    index = prepare_lidc.prepare(root, out)
    return root, out, index, {"A": (a, dense_r, dense_l), "B": (b, dense_b)}


def test_lidc_malignancy_from_readers_and_maps(luna):
    root, out, index, truth = luna
    assert index["missing_images"] == [UID_C]
    cases = {c["seriesuid"]: c for c in index["cases"]}
    a = cases[UID_A]
    right, left = a["nodules"]
    assert right["ratings"] == [4, 4, 3] and right["malignancy"] == pytest.approx(11 / 3)
    assert right["label"] == "malignant nodule" and left["label"] == "benign nodule" and left["ratings"] == [2, 1]
    assert a["ratings_matched"] == 5 and a["ratings_unmatched"] == 1 and a["lungs_from"] == "seg-lungs-LUNA16"
    ct, dense_r, dense_l = truth["A"]
    m = read_volume(a["map"])
    assert m.same_grid(ct)
    assert np.all(m.array[dense_r] == L.MALIGNANT) and np.all(m.array[dense_l] == L.BENIGN)
    # refined to the dense part: the 14 mm annotation sphere is larger than the 12 mm nodule
    assert (m.array == L.MALIGNANT).sum() < 1.3 * dense_r.sum()
    left_lung = np.argwhere(m.array == L.LEFT_LUNG).mean(0)
    assert ct.index_to_physical(left_lung[None])[0, 0] > 0            # LUNA 3 = left lung, on the patient's left
    assert (m.array == L.TRACHEA).any() and a["nodule_slices"] and a["healthy_slices"]
    assert not set(a["healthy_slices"]) & set(np.flatnonzero(np.isin(m.array, L.NODULES).any(axis=(1, 2))))
    assert json.loads((out / "index.json").read_text())["cases"][0]["seriesuid"] == UID_A


def test_lidc_without_lung_masks_or_ratings_uses_the_auto_map(luna):
    _, _, index, truth = luna
    b = {c["seriesuid"]: c for c in index["cases"]}[UID_B]
    assert b["lungs_from"] == "auto_map" and b["nodules"][0]["label"] == "nodule" and b["nodules"][0]["ratings"] == []
    ct, dense = truth["B"]
    m = read_volume(b["map"]).array
    assert np.all(m[dense] == L.NODULE)
    assert {L.BODY, L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA, L.NODULE} <= set(np.unique(m).tolist())


def test_lidc_bad_folders(tmp_path):
    with pytest.raises(RadSynthError, match="annotations.csv"):
        prepare_lidc.prepare(tmp_path, tmp_path / "o")
    (tmp_path / "annotations.csv").write_text("uid,x\n1,2\n")
    with pytest.raises(RadSynthError, match="columns"):
        prepare_lidc.prepare(tmp_path, tmp_path / "o")
    (tmp_path / "annotations.csv").write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2,0,0,0,4\n")
    with pytest.raises(RadSynthError, match="None of the 1"):
        prepare_lidc.prepare(tmp_path, tmp_path / "o")
    assert prepare_lidc.two_means_threshold(np.r_[np.full(50, -800.0), np.full(30, 40.0)]) == pytest.approx(-380.0)


# -- TotalSegmentator / KiTS23 --------------------------------------------------------------------------------------
def _small_ct(shape=(10, 32, 32)) -> Volume:
    return Volume(np.full(shape, 40, np.int16), (0.0, 0.0, 0.0), (1.5, 1.5, 3.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))


def test_totalsegmentator_organ_maps(tmp_path):
    root = tmp_path / "Totalsegmentator_dataset"
    case = root / "s0001"
    (case / "segmentations").mkdir(parents=True)
    ct = _small_ct()
    write_volume(ct, case / "ct.nii.gz")
    boxes = {"kidney_left": (slice(2, 5), slice(5, 10), slice(20, 26)),
             "kidney_right": (slice(2, 5), slice(5, 10), slice(5, 11)),
             "liver": (slice(5, 9), slice(12, 25), slice(4, 20)),
             "lung_upper_lobe_left": (slice(8, 10), slice(2, 6), slice(20, 30)),
             "lung_middle_lobe_right": (slice(8, 10), slice(2, 6), slice(2, 12))}
    for name in [*boxes, "spleen", "pancreas"]:
        seg = np.zeros(ct.shape, np.uint8)
        if name in boxes:
            seg[boxes[name]] = 1
        write_volume(ct.label_like(seg), case / "segmentations" / f"{name}.nii.gz")
    (root / "meta.csv").write_text("image_id;age;gender;institute;study_type;split\ns0001;63;f;A;ct abdomen;train\n")
    index = prepare_organs.prepare(root, tmp_path / "out")
    c = index["cases"][0]
    assert index["layout"] == "totalsegmentator" and c["split"] == "train"
    m = read_volume(c["map"]).array
    assert np.all(m[boxes["kidney_left"]] == 1) and np.all(m[boxes["kidney_right"]] == 1)
    assert np.all(m[boxes["liver"]] == 2) and np.all(m[boxes["lung_middle_lobe_right"]] == 6)
    assert c["organs"]["kidney"]["slices"] == [2, 3, 4] and "spleen" not in c["organs"]
    assert "gallbladder" in c["missing_structures"] and "lung_lower_lobe_left" in c["missing_structures"]
    only = prepare_organs.prepare(root, tmp_path / "out2", organs=("liver",))
    assert set(only["cases"][0]["organs"]) == {"liver"}
    with pytest.raises(RadSynthError, match="brain"):
        prepare_organs.prepare(root, tmp_path / "out3", organs=("brain",))


def test_kits23_maps_and_bad_labels(tmp_path):
    root = tmp_path / "kits23" / "dataset"
    ct = _small_ct()
    seg = np.zeros(ct.shape, np.uint8)
    seg[2:6, 8:20, 8:20] = 1
    seg[3:5, 10:14, 10:14] = 2
    seg[4, 16:18, 16:18] = 3
    for name in ("case_00000", "case_00001"):
        (root / name).mkdir(parents=True)
        write_volume(ct, root / name / "imaging.nii.gz")
        write_volume(ct.label_like(seg), root / name / "segmentation.nii.gz")
    (root / "case_00002").mkdir()        # incomplete: skipped
    index = prepare_organs.prepare(root, tmp_path / "out")
    assert index["layout"] == "kits23" and len(index["cases"]) == 2
    m = read_volume(index["cases"][0]["map"]).array
    assert m[4, 12, 12] == 7 and m[4, 16, 16] == 8 and m[2, 9, 9] == 1 and m[0, 0, 0] == 0
    assert index["cases"][0]["organs"]["kidney tumour"]["slices"] == [3, 4]
    bad = seg.copy()
    bad[0, 0, 0] = 5
    write_volume(ct.label_like(bad), root / "case_00001" / "segmentation.nii.gz")
    with pytest.raises(RadSynthError, match="label\\(s\\) 5"):
        prepare_organs.prepare(root, tmp_path / "out4")
    with pytest.raises(RadSynthError, match="neither"):
        prepare_organs.prepare(tmp_path, tmp_path / "out5")
