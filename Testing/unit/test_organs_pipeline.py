"""``generate organs`` on small synthetic maps with a tiny (untrained) organ score network: the result lies on the
map's grid (both k-axis signs), each stack is conditioned on its own slices' maps, organs not kept are relabelled
to what surrounds them before conditioning, guidance 0 drops the map and other values cost two evaluations,
unknown organ names and map values are refused by name, cancel keeps the lowest slices labelled partial."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radsynth.errors import CancelledError, InvalidOptionError, UnknownLabelError
from radsynth.nets.score_unet import ScoreUNet
from radsynth.pipelines.generate import organs
from radsynth.pipelines.inpaint import labels
from radsynth.progress import CancelToken
from radsynth.volume import PROVENANCE_KEY, Volume

torch.set_num_threads(1)
torch.set_flush_denormal(True)

ROWS, COLS, COUNT = 40, 48, 6
SPACING = (1.5, 1.25, 5.0)
CLASSES = list(labels.BASIC)
C = len(CLASSES)


def tiny_organ_net(k: int = 2) -> ScoreUNet:
    torch.manual_seed(0)
    net = ScoreUNet({"slices": k, "channels": [8, 8], "attention_levels": [False, False], "num_head_channels": 8,
                     "norm_num_groups": 8, "condition_channels": k * C}, 0.001, 68.0).eval()
    net.card = {"name": "tiny-organ", "version": "0", "kind": "organ-score",
                "sde": {"type": "ve", "sigma_min": 0.001, "sigma_max": 68.0}, "window": [-1024.0, 3071.0],
                "architecture": {"slices": k}, "classes": CLASSES,
                "grid": {"size": 16, "spacing_mm": 4.0, "slice_spacing_mm": 5.0}}
    return net


class Spy(torch.nn.Module):
    """Wraps the network and records the condition of every evaluation."""

    def __init__(self, net):
        super().__init__()
        self.net, self.card, self.condition_channels = net, net.card, net.condition_channels
        self.conditions = []

    def forward(self, x, sigma, condition=None):
        self.conditions.append(condition.clone())
        return self.net(x, sigma, condition)


def organ_map(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), count: int = COUNT) -> Volume:
    """Body with two lungs on every slice; a nodule inside the right lung; slice k's body is k pixels wider."""
    y, x = np.mgrid[:ROWS, :COLS]
    out = np.zeros((count, ROWS, COLS), np.uint8)
    for k in range(count):
        out[k][((y - ROWS / 2) / (12 + k)) ** 2 + ((x - COLS / 2) / (16 + k)) ** 2 < 1] = labels.BODY
        out[k][((y - ROWS / 2) / 7) ** 2 + ((x - COLS / 2 + 8) / 5) ** 2 < 1] = labels.RIGHT_LUNG
        out[k][((y - ROWS / 2) / 7) ** 2 + ((x - COLS / 2 - 8) / 5) ** 2 < 1] = labels.LEFT_LUNG
        out[k][(np.abs(y - ROWS / 2) < 2) & (np.abs(x - COLS / 2 + 8) < 2)] = labels.NODULE
    return Volume(out, (-30.0, -25.0, 100.0), SPACING, tuple(float(v) for v in direction))


def run(label_map=None, net=None, **kw):
    return organs.generate_organs(organ_map() if label_map is None else label_map, net or tiny_organ_net(), None,
                                  steps=kw.pop("steps", 3), **kw)


@pytest.mark.parametrize("flip", [False, True])
def test_result_lies_on_the_maps_grid_at_the_start_slice(flip):
    m = organ_map((1, 0, 0, 0, 1, 0, 0, 0, -1) if flip else (1, 0, 0, 0, 1, 0, 0, 0, 1))
    res = run(m, start=2, slices=3)
    v = res.volume
    assert v.shape == (3, ROWS, COLS) and v.spacing == m.spacing and v.direction == m.direction
    first = 0 if not flip else 2 - 2          # flipped: slices 2, 1, 0 in the map's k order, lowest index 0
    expected = m.index_to_physical(np.array([[2 if not flip else first, 0, 0]], float))[0]
    assert np.allclose(v.origin, expected)
    assert v.is_synthetic and res.settings["slices_generated"] == 3 and not res.settings["partial"]
    assert res.settings["output_first_slice_in_map"] == (2 if not flip else 0)
    assert any("nearest neighbour" in w for w in res.warnings)


def test_default_start_is_the_lowest_slice_with_organs():
    m = organ_map()
    m.array[:2] = 0
    res = run(m, slices=2)
    assert res.settings["start"] == 2


def test_each_stack_is_conditioned_on_its_own_slices():
    spy = Spy(tiny_organ_net())
    run(net=spy, start=1, slices=3, steps=2)
    planes = organs.labels_to_model_plane(organ_map().array, SPACING, 16, 4.0)
    per_slice = 2                          # evaluations per stack at 2 levels
    for n in range(3):                     # stack n holds slab positions n-1 (air below the slab) and n
        cond = spy.conditions[n * per_slice][0].view(2, C, 16, 16)
        below = planes[1 + n - 1] if n > 0 else np.zeros((16, 16), np.uint8)
        for j, lab in enumerate((below, planes[1 + n])):
            assert torch.equal(cond[j].argmax(0), torch.from_numpy(lab.astype(np.int64)))
            assert torch.all(cond[j].sum(0) == 1)


def test_organs_not_kept_are_relabelled_to_what_surrounds_them():
    planes = organs.labels_to_model_plane(organ_map().array, SPACING, 16, 4.0)
    kept = organs.organ_values("body, Left lung, right_lung")
    out, replaced = organs.keep_organs(planes, kept, (5.0, 4.0, 4.0))
    nodule = planes == labels.NODULE
    assert nodule.any() and "nodule" in replaced
    assert np.all(out[nodule] == labels.RIGHT_LUNG)         # the nodule sat inside the right lung
    assert np.array_equal(out[~nodule], planes[~nodule])
    no_lungs, _ = organs.keep_organs(planes, organs.organ_values(["body"]), (5.0, 4.0, 4.0))
    lungs = np.isin(planes, (labels.LEFT_LUNG, labels.RIGHT_LUNG, labels.NODULE))
    assert np.all(no_lungs[lungs] == labels.BODY)


def test_unticked_organ_never_reaches_the_network():
    spy = Spy(tiny_organ_net())
    res = run(net=spy, start=0, slices=2, steps=2, keep="body,left lung")
    lung = CLASSES.index(labels.RIGHT_LUNG)
    nod = CLASSES.index(labels.NODULE)
    for cond in spy.conditions:
        c = cond[0].view(2, C, 16, 16)
        assert c[:, lung].sum() == 0 and c[:, nod].sum() == 0
    assert set(res.settings["replaced_voxels_model_grid"]) == {"right lung", "nodule"}
    assert res.settings["keep"] == ["body", "left lung"]


def test_guidance_zero_drops_the_map_and_guidance_two_costs_two_evaluations():
    spy = Spy(tiny_organ_net())
    run(net=spy, start=0, slices=1, steps=2, guidance=0.0)
    assert len(spy.conditions) == 2 and all(float(c.abs().sum()) == 0 for c in spy.conditions)
    spy.conditions.clear()
    res = run(net=spy, start=0, slices=1, steps=2, guidance=2.0)
    assert len(spy.conditions) == 4 and res.settings["evaluations_per_slice"] == 4


@pytest.mark.parametrize("kwargs, error, words", [
    ({"keep": "body,liver"}, UnknownLabelError, "'liver'"),
    ({"start": 6}, InvalidOptionError, "outside the organ map"),
    ({"start": 4, "slices": 3}, InvalidOptionError, "at most 2"),
])
def test_refusals_name_the_problem(kwargs, error, words):
    with pytest.raises(error, match=words):
        run(**kwargs)


def test_map_values_the_model_does_not_know_are_refused_by_value():
    m = organ_map()
    m.array[0, 0, 0] = 9
    with pytest.raises(UnknownLabelError, match="9"):
        run(m)


def test_an_empty_map_is_refused():
    m = organ_map()
    m.array[:] = 0
    with pytest.raises(InvalidOptionError, match="empty"):
        run(m)


def test_cancel_keeps_the_lowest_slices_labelled_partial():
    full = run(start=0, slices=3, seed=4)
    token = CancelToken()
    seen = []

    def on_slice(position, _s):
        seen.append(position)
        if len(seen) == 2:
            token.cancel()

    res = run(start=0, slices=3, seed=4, cancel=token, on_slice=on_slice)
    assert res.settings["partial"] and res.settings["slices_generated"] == 2 and seen == [0, 1]
    assert np.array_equal(res.volume.array, full.volume.array[:2])
    assert "PARTIAL" in res.volume.metadata[PROVENANCE_KEY]
    assert res.volume.metadata["RadSynth.Partial"] == "2/3"
    token2 = CancelToken()
    token2.cancel()
    with pytest.raises(CancelledError):
        run(start=0, slices=3, cancel=token2)


def test_live_preview_holds_the_volume_so_far_after_every_slice(tmp_path):
    from radsynth.pipelines.generate.slices import read_preview

    counts = []

    def on_slice(_position, _s):
        seen = read_preview(str(tmp_path))
        counts.append(0 if seen is None else seen.shape[0])

    m = organ_map((1, 0, 0, 0, 1, 0, 0, 0, -1))
    res = run(m, start=3, slices=3, preview=str(tmp_path), on_slice=on_slice)
    assert counts == [0, 1, 2]                 # on_slice runs before the preview writes the slice it was given
    final = read_preview(str(tmp_path))
    assert np.array_equal(final.array, res.volume.array) and np.allclose(final.origin, res.volume.origin)
    assert final.is_synthetic and "growing" in final.metadata[PROVENANCE_KEY]


def test_slices_preview_includes_the_seed_and_ends_as_the_result(tmp_path):
    from test_slices_pipeline import phantom, tiny_net

    from radsynth.pipelines.generate.slices import generate_slices, read_preview

    res = generate_slices(phantom(), tiny_net(), None, seed_slice=2, direction="both", slices=3, steps=2,
                          preview=str(tmp_path))
    final = read_preview(str(tmp_path))
    assert np.array_equal(final.array, res.volume.array) and np.allclose(final.origin, res.volume.origin)


def test_first_slice_conditioned_on_the_images_real_slice_below_the_start(tmp_path):
    m = organ_map()
    ct = Volume(np.where(m.array > 0, 40, -1000).astype(np.int16), m.origin, m.spacing, m.direction)
    spy = Spy(tiny_organ_net())
    seen = []
    res = run(net=spy, start=2, slices=2, steps=2, image=ct, on_slice=lambda p, s: seen.append(p),
              preview=str(tmp_path))
    planes = organs.labels_to_model_plane(m.array, SPACING, 16, 4.0)
    first = spy.conditions[0][0].view(2, C, 16, 16)
    assert torch.equal(first[0].argmax(0), torch.from_numpy(planes[1].astype(np.int64)))   # the real slice's map
    assert torch.equal(first[1].argmax(0), torch.from_numpy(planes[2].astype(np.int64)))
    assert res.settings["first_neighbour"] == "image slice below the start" and seen == [0, 1]
    assert res.volume.shape[0] == 2                         # the real slice is a condition, not part of the result
    from radsynth.pipelines.generate.slices import read_preview
    assert np.array_equal(read_preview(str(tmp_path)).array, res.volume.array)
    air = run(start=0, slices=1, image=ct)                 # nothing below the first slice: from air, said so
    assert air.settings["first_neighbour"] == "air" and any("air slice" in w for w in air.warnings)
    other = Volume(ct.array, (0.0, 0.0, 0.0), ct.spacing, ct.direction)
    assert run(start=2, slices=1, image=other).settings["first_neighbour"] == "air"
