"""The automatic body/lung/trachea map (thresholds and morphology) and the label scheme.

On the real sample CTs the tumour labels say where the lungs must be: lung1's tumour sits at the right hilum, lung2's
in the left lower lobe. On a phantom with a mirrored direction matrix, left and right must follow LPS geometry, not
array order.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radsynth.errors import InvalidImageError, InvalidMaskError
from radsynth.pipelines.inpaint import labels as L
from radsynth.pipelines.inpaint.auto_map import auto_map
from radsynth.sample_data import sample_path
from radsynth.volume import Volume, read_volume


# -- label scheme ---------------------------------------------------------------------------------------------------
def test_unknown_labels_are_named():
    m = np.zeros((4, 4), np.uint8)
    m[0, 0], m[1, 1], m[2, 2] = 2, 9, 12
    with pytest.raises(L.UnknownLabelError) as err:
        L.validate(m)
    msg = str(err.value)
    assert "9" in msg and "12" in msg and "labels 9, 12" in msg and "2 left lung" in msg
    assert isinstance(err.value, InvalidMaskError)
    m[1, 1] = m[2, 2] = 7          # malignant: in the scheme, but not known to a basic model
    with pytest.raises(L.UnknownLabelError, match="7 \\(malignant nodule, not known to this model\\)"):
        L.validate(m, L.BASIC)
    assert L.validate(m) == [0, 2, 7]
    with pytest.raises(L.UnknownLabelError, match="fractional"):
        L.validate(np.array([[0.5, 1.0]]))


def test_segment_names_priorities_and_malignancy_folding():
    assert L.value_of("Left lung") == L.LEFT_LUNG == L.value_of("lung_left")
    assert L.value_of("Tumor") == L.NODULE and L.value_of("malignant") == L.MALIGNANT
    with pytest.raises(L.UnknownLabelError, match="'liver'"):
        L.value_of("liver")
    body = np.ones((3, 3), bool)
    lung = np.zeros((3, 3), bool)
    lung[1:, 1:] = True
    nod = np.zeros((3, 3), bool)
    nod[2, 2] = True
    m = L.from_segments({"Body": body, "right lung": lung, "Nodule": nod, "lesion": nod.T})
    assert m[0, 0] == L.BODY and m[1, 1] == L.RIGHT_LUNG and m[2, 2] == L.NODULE
    folded, note = L.fold_malignancy(np.array([[6, 7, 2]]), L.BASIC)
    assert folded.tolist() == [[5, 5, 2]] and "malignancy" in note
    same, note = L.fold_malignancy(np.array([[6, 7, 2]]), L.ALL)
    assert same.tolist() == [[6, 7, 2]] and note is None
    oh = L.one_hot(np.array([[0, 5], [2, 2]]), L.BASIC)
    assert oh.shape == (6, 2, 2) and oh.sum(0).tolist() == [[1, 1], [1, 1]] and oh[5, 0, 1] == 1


# -- sample CTs -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["lung1", "lung2"])
def sample_map(request):
    ct = read_volume(sample_path(request.param, "image"))
    tumour = read_volume(sample_path(request.param, "label"))
    return request.param, ct, tumour, auto_map(ct, tumour)


#: the side of each sample's tumour, read off the CT by a person (lung1: right hilum; lung2: left lower lobe)
TUMOUR_SIDE = {"lung1": L.RIGHT_LUNG, "lung2": L.LEFT_LUNG}


def _centroid_lps(ct: Volume, mask: np.ndarray) -> np.ndarray:
    return ct.index_to_physical(np.argwhere(mask).mean(0)[None])[0]


def test_tumour_is_in_or_next_to_the_lung_of_its_side(sample_map):
    case, ct, tumour, result = sample_map
    m = result.map.array
    tum = tumour.array > 0
    assert np.all(m[tum] == L.NODULE)                   # the real label is drawn on top
    shell = ndimage.binary_dilation(tum, iterations=6) & ~tum
    values, counts = np.unique(m[shell], return_counts=True)
    share = dict(zip(values.tolist(), (counts / counts.sum()).tolist()))
    side, other = TUMOUR_SIDE[case], ({L.LEFT_LUNG, L.RIGHT_LUNG} - {TUMOUR_SIDE[case]}).pop()
    assert share.get(side, 0) > 0.5, share               # measured: lung1 0.98 right, lung2 0.60 left
    assert share.get(other, 0) < 0.01, share


def test_lungs_on_the_correct_ras_side_and_trachea_superior_midline(sample_map):
    case, ct, _, result = sample_map
    m = result.map.array
    left, right, trachea, body = (_centroid_lps(ct, m == v) for v in (L.LEFT_LUNG, L.RIGHT_LUNG, L.TRACHEA, L.BODY))
    # RAS R = −LPS x: the left lung has negative R
    assert -left[0] < -20 and -right[0] > 20, (left, right)
    assert trachea[2] > max(left[2], right[2]) + 30                # superior (LPS z = S)
    assert abs(trachea[0] - body[0]) < 20                          # midline (measured: 3 mm, 5 mm)
    lo, hi = result.trachea_slices
    assert 0 <= lo < hi and (hi - lo + 1) * ct.spacing[2] >= 50    # a trachea, not a speck
    n_left, n_right = (m == L.LEFT_LUNG).sum(), (m == L.RIGHT_LUNG).sum()
    assert 0.4 < n_left / n_right < 1.2                            # two lungs, the right the larger
    assert not result.warnings


def test_map_grid_and_only_scheme_labels(sample_map):
    _, ct, _, result = sample_map
    assert result.map.same_grid(ct) and result.map.array.dtype == np.uint8
    assert set(L.validate(result.map.array)) == {0, 1, 2, 3, 4, 5}
    assert not result.map.is_synthetic


# -- phantom --------------------------------------------------------------------------------------------------------
def _phantom(mirrored: bool) -> tuple[Volume, float]:
    """A chest: body ellipse, two lungs touching in front (a junction line), a trachea dividing into bronchi.

    Returns the volume and the LPS x of the larger (right, patient's) lung's centre."""
    nk, nj, ni = 24, 96, 96
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    a = np.full((nk, nj, ni), -1000.0)
    body = ((j - 48) / 40) ** 2 + ((i - 48) / 44) ** 2 < 1
    a[body] = 40.0
    # patient's right lung at low i (LPS x grows with i for the plain direction), larger than the left
    right = ((k - 9) / 9) ** 2 + ((j - 50) / 24) ** 2 + ((i - 30) / 16) ** 2 < 1
    left = ((k - 9) / 8) ** 2 + ((j - 50) / 22) ** 2 + ((i - 65) / 14) ** 2 < 1
    a[right | left] = -850.0
    a[(k >= 5) & (k <= 12) & (i >= 36) & (i <= 62) & (np.abs(j - 30) <= 1)] = -850.0   # junction line in front
    trachea = (k >= 15) & ((j - 52) ** 2 + (i - 48) ** 2 <= 9)
    a[trachea] = -1000.0
    for side in (-1, 1):                                                     # main bronchi
        a[(k >= 11) & (k <= 14) & ((j - 52) ** 2 + (i - 48 - side * (15 - k) * 4) ** 2 <= 4)] = -1000.0
    spacing = (3.0, 3.0, 5.0)
    if mirrored:  # same patient stored with i running to the patient's right: array flipped, direction says so
        a = a[:, :, ::-1].copy()
        direction = (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
        origin = (ni - 1) * spacing[0], 0.0, 0.0
    else:
        direction, origin = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), (0.0, 0.0, 0.0)
    return Volume(a.astype(np.int16), origin, spacing, direction), 30 * spacing[0]


@pytest.mark.parametrize("mirrored", [False, True])
def test_phantom_sides_follow_geometry_not_array_order(mirrored):
    ct, right_x = _phantom(mirrored)
    result = auto_map(ct)
    m = result.map.array
    r = _centroid_lps(ct, m == L.RIGHT_LUNG)
    left = _centroid_lps(ct, m == L.LEFT_LUNG)
    assert abs(r[0] - right_x) < 10 and left[0] > r[0] + 60
    assert result.split.startswith("erosion")          # the junction line had to be cut
    assert result.trachea_slices == (15, 23)            # above the carina only
    t = _centroid_lps(ct, m == L.TRACHEA)
    assert abs(t[0] - 48 * 3.0) < 5


def test_phantom_bad_inputs():
    ct, _ = _phantom(False)
    sagittal = Volume(np.ascontiguousarray(np.transpose(ct.array, (2, 1, 0))), (0, 0, 0), (5.0, 3.0, 3.0),
                      (0, 0, 1.0, 0, 1.0, 0, 1.0, 0, 0))
    with pytest.raises(InvalidImageError, match="axial"):
        auto_map(sagittal)
    with pytest.raises(InvalidImageError):
        auto_map(ct.with_array(np.zeros(ct.shape, np.float32)))
    no_trachea = ct.with_array(np.where(ct.array == -1000, 40, ct.array).astype(np.int16))
    no_trachea.array[:, :3, :] = -1000
    no_trachea.array[:, -3:, :] = -1000
    assert any("trachea" in w for w in auto_map(no_trachea).warnings)


def test_auto_map_operation_through_the_registry():
    from radsynth.pipelines import registry

    ct, _ = _phantom(False)
    nod = np.zeros(ct.shape, np.uint8)
    nod[9, 50, 30] = 1
    op = registry.get("auto-map")
    assert not op.needs_mask and op.module == "inpaint"
    result = op.runner()(registry.RunContext(lambda *a: None), ct, None,
                         **op.check({"nodules": ct.label_like(nod), "nodule_label": "malignant nodule"}))
    assert result.volume.array[9, 50, 30] == L.MALIGNANT and not result.volume.is_synthetic
    rows = {r["name"]: r for r in result.tables["labels"]}
    assert rows["malignant nodule"]["voxels"] == 1 and rows["trachea"]["volume_ml"] > 0
    assert result.settings["lung_split"].startswith("erosion")
