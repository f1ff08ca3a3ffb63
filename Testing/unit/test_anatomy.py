"""radsynth.anatomy: body and aerated-lung masks on a phantom (any slice orientation) and on the sample chest CTs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from radsynth import anatomy, geometry
from radsynth.sample_data import sample_path
from radsynth.volume import Volume, read_volume


def phantom(shape=(20, 64, 64)) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """An axial chest-like phantom: a 0 HU body in air, two -850 HU lungs joined by a trachea, a small gas bubble
    in the 'abdomen', a table slab touching the image sides, and a lung vessel."""
    k, j, i = np.indices(shape)
    parts = {}
    parts["body"] = ((j - 30) / 24.0) ** 2 + ((i - 32) / 28.0) ** 2 <= 1
    parts["right"] = (((j - 30) / 14.0) ** 2 + ((i - 20) / 9.0) ** 2 <= 1) & (k >= 4)
    parts["left"] = (((j - 30) / 14.0) ** 2 + ((i - 44) / 9.0) ** 2 <= 1) & (k >= 4)
    parts["trachea"] = ((j - 22) ** 2 + (i - 32) ** 2 <= 4) & (k >= 12)
    parts["carina"] = (np.abs(j - 22) <= 1) & (i >= 20) & (i <= 44) & (k >= 12) & (k <= 13)
    parts["bubble"] = ((j - 40) ** 2 + (i - 34) ** 2 + (k - 1) ** 2 <= 4)
    parts["table"] = (j >= 58) & (j <= 60)
    parts["vessel"] = (j == 30) & (i == 20)
    hu = np.full(shape, -1000, np.int16)
    hu[parts["body"]] = 0
    hu[parts["table"]] = 200
    for air in ("right", "left", "trachea", "carina"):
        hu[parts[air] & parts["body"]] = -850
    hu[parts["bubble"]] = -950
    hu[parts["vessel"] & parts["right"]] = 40
    return hu, parts


AXIAL = tuple(np.eye(3).ravel())


def test_phantom_body_and_lungs():
    hu, parts = phantom()
    vol = Volume(hu, (0.0, 0.0, 0.0), (2.0, 2.0, 5.0), AXIAL)
    body = anatomy.body_mask(vol)
    lung = anatomy.lung_mask(vol)
    assert body[parts["body"]].mean() > 0.99 and not body[parts["table"]].any()
    assert not body[~parts["body"]].any()
    expected = (parts["right"] | parts["left"] | parts["trachea"] | parts["carina"]) & parts["body"]
    expected &= ~(parts["vessel"] & parts["right"])
    assert np.array_equal(lung, expected)          # both lungs and the airway; not the vessel, gas or air outside
    assert not lung[parts["bubble"]].any()
    assert np.array_equal(anatomy.lung_mask(vol, body=body), lung)


def test_sagittal_phantom_gives_the_same_masks():
    """The same phantom stored with sagittal slices: the in-plane sides are found from the direction matrix."""
    hu, _ = phantom()
    vol = Volume(hu, (0.0, 0.0, 0.0), (2.0, 2.0, 5.0), AXIAL)
    # stored index (k', j', i') = (i, k, j) of the axial one, same physical points: i' runs to P, j' to S, k' to L
    stored = np.ascontiguousarray(hu.transpose(2, 0, 1))
    d = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], float)   # columns: directions of i', j', k'
    sag = Volume(stored, (0.0, 0.0, 0.0), (2.0, 5.0, 2.0), tuple(d.ravel()))
    np.testing.assert_allclose(sag.index_to_physical([[3, 7, 5]]), vol.index_to_physical([[7, 5, 3]]))
    assert geometry.axial_axis(sag) == 1
    assert np.array_equal(anatomy.lung_mask(sag), anatomy.lung_mask(vol).transpose(2, 0, 1))
    assert np.array_equal(anatomy.body_mask(sag), anatomy.body_mask(vol).transpose(2, 0, 1))


def test_no_lungs_in_an_abdomen_slab():
    """Stomach gas alone is not lung: the lowest slices of lung2 hold only abdomen."""
    ct = read_volume(sample_path("lung2", "image"))
    slab = ct.with_array(np.ascontiguousarray(ct.array[:5]))
    assert (anatomy.body_mask(slab).mean()) > 0.3
    assert not anatomy.lung_mask(slab).any()


@pytest.fixture(scope="module", params=["lung1", "lung2"])
def case(request):
    ct = read_volume(sample_path(request.param, "image"))
    label = read_volume(sample_path(request.param, "label"))
    body = anatomy.body_mask(ct)
    return request.param, ct, label, body, anatomy.lung_mask(ct, body=body)


def test_sample_ct_masks_are_plausible(case):
    name, ct, _, body, lung = case
    litre = float(np.prod(ct.spacing)) / 1e6
    assert not (lung & ~body).any()                           # the lungs are inside the body
    assert 1.5 < lung.sum() * litre < 8.0                     # both lungs: lung1 2.8 L, lung2 3.9 L over the slab
    # each lung on its side of the body's midline (patient right = low i in LPS)
    mid = int(round(np.argwhere(body)[:, 2].mean()))
    right, left = lung[:, :, :mid].sum() * litre, lung[:, :, mid:].sum() * litre
    assert 0.7 < right < 4.0 and 0.7 < left < 4.0, (name, right, left)
    assert right > left                                       # the right lung is the larger one
    assert 8.0 < body.sum() * litre < 40.0
    # air around the patient is outside: the image corners are not body
    assert not body[:, :5, :5].any() and not body[:, :5, -5:].any()


def test_tumour_lies_next_to_the_lung(case):
    """The labelled tumours sit in the lung: every tumour voxel is within 2 cm of aerated lung (lung1: 95 % within
    4 mm, lung2, a large tumour against the mediastinum: within 13 mm), while body soft tissue lies 2-3 cm away."""
    name, ct, label, body, lung = case
    tumour = label.array > 0
    assert lung[tumour].mean() < 0.05                         # solid tumour (label edges: 1 % in lung2)
    # distances within a box 40 mm around the tumour: exact up to 40 mm, which is all the checks need
    spacing = np.asarray(ct.spacing)[::-1]
    idx = np.argwhere(tumour)
    margin = np.ceil(40.0 / spacing).astype(int)
    box = tuple(slice(max(lo - m, 0), hi + m + 1) for lo, hi, m in zip(idx.min(0), idx.max(0), margin))
    to_lung = ndimage.distance_transform_edt(~lung[box], sampling=spacing)
    assert np.percentile(to_lung[tumour[box]], 95) < 15.0 and to_lung[tumour[box]].max() < 20.0, name
    soft = body[box] & (np.abs(ct.array[box].astype(np.int32)) < 100) & ~tumour[box]
    assert np.median(to_lung[soft]) > 2 * np.median(to_lung[tumour[box]]), name
    # and much of its in-plane rim (~2.5 mm) is lung itself
    flat = np.zeros((3, 3, 3), bool)
    flat[1] = True
    rim = ndimage.binary_dilation(tumour, structure=flat, iterations=4) & ~tumour
    assert (rim & lung).sum() / rim.sum() > 0.4, name
