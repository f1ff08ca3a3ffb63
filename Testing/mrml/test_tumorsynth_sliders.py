"""TumorSynth panel sliders without Qt: the live shape preview segment, texture sliders starting from the source,
the log volume slider; real MRML (slicer-core), the real lung1 CT."""

from __future__ import annotations

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")

from operations_support import PRESET, markups, ml  # noqa: E402
from TumorSynthLib import sliders  # noqa: E402
from TumorSynthLib.logic import TEXTURE_SEGMENT  # noqa: E402
from TumorSynthLib.operations import TEXTURE_SLIDER_FEATURES, OperationParameters, centroid_lps  # noqa: E402

from radsynth import mrml  # noqa: E402


def test_shape_preview_is_a_temporary_segment_at_the_point(scene, loaded, lung1, points):
    ct, _ = lung1
    node = loaded[0]
    point, lps = markups(scene, ct, points[1])
    preview = sliders.ShapePreview()
    shape = sliders.shape_defaults(preview.shape_model())
    assert shape["volume_ml"] == sliders.DEFAULT_VOLUME_ML and 0 < shape["shape_Flatness"] <= 1
    count = scene.GetNumberOfNodes()
    state = preview.update(dict(shape, volume_ml=5.0), seed=0, volume_node=node, point=point)
    assert state.error is None and state.measured["volume_ml"] == pytest.approx(5.0, rel=1e-3)
    mask = mrml.segment_to_mask(state.node, state.node.GetSegmentation().GetNthSegmentID(0), node)
    assert ml(mask) == pytest.approx(5.0, rel=0.2) and np.linalg.norm(centroid_lps(mask) - lps) < 5.0
    assert not state.node.GetSaveWithScene()
    preview.update(dict(shape, volume_ml=1.0), seed=0, volume_node=node, point=point)  # replaces, not adds
    assert scene.GetNumberOfNodes() == count + 2  # the preview segmentation and its display node
    far, _ = markups(scene, ct, (0, 0, 0))
    state = preview.update(shape, seed=0, volume_node=node, point=far)
    assert state.node is None and "edge" in state.error
    preview.clear()
    assert scene.GetNumberOfNodes() == count + 1  # only the second markups node remains


def test_texture_sliders_start_from_the_source(scene, loaded, lung1):
    from radsynth.radiomics import load_preset, texture_features

    ct, _ = lung1
    node, seg, sid, nodule = loaded
    values = sliders.texture_source_values(OperationParameters(preset=PRESET))
    assert values == {k: pytest.approx(load_preset(PRESET)[k]) for k in TEXTURE_SLIDER_FEATURES}
    measured = sliders.texture_source_values(OperationParameters(input_volume=node, segmentation=seg,
                                                                 texture_source=TEXTURE_SEGMENT,
                                                                 texture_segment_id=sid))
    expected = texture_features(ct, ct.with_array(nodule))
    assert measured == {k: pytest.approx(expected[k], rel=1e-6) for k in TEXTURE_SLIDER_FEATURES}
    assert tuple(s.feature for s in sliders.TEXTURE_SLIDERS) == TEXTURE_SLIDER_FEATURES


def test_log_volume_slider_round_trips():
    positions = [sliders.position_from_volume(v) for v in (0.1, 1.0, 10.0, 100.0)]
    assert positions == [0, 333, 667, 1000], "equal ratios are equal slider steps"
    for v in (0.25, 3.0, 42.0):
        assert sliders.volume_from_position(sliders.position_from_volume(v)) == pytest.approx(v, rel=0.01)


def test_texture_limits_follow_the_model_card(tmp_path):
    import json

    from radsynth.models import bundled

    card = json.loads((bundled("demo-tumor-bbdm") / "card.json").read_text())
    names, mean, std = card["features"]["names"], card["features"]["mean"], card["features"]["std"]
    limits = sliders.texture_limits()
    for spec in sliders.TEXTURE_SLIDERS:
        i = names.index(spec.feature)
        low, high = mean[i] + std[i] * card["gaussian"]["low"][i], mean[i] + std[i] * card["gaussian"]["high"][i]
        step = 10.0 ** -spec.decimals
        assert low - step < limits[spec.feature][0] <= low and high <= limits[spec.feature][1] < high + step
    assert limits["glcm_Contrast"][1] < 100, "the demo model never saw a contrast near the old fixed limit of 200"
    # a measured source beyond the training tumours is shown as it is, not clipped into another request
    assert sliders.texture_limits(source={"firstorder_Mean": 420.5})["firstorder_Mean"][1] == 421.0
    (tmp_path / "card.json").write_text("{ not json")
    fallback = {s.feature: (s.minimum, s.maximum) for s in sliders.TEXTURE_SLIDERS}
    assert sliders.texture_limits(str(tmp_path)) == fallback
    assert sliders.texture_limits(str(tmp_path / "missing")) == fallback


def test_the_panel_names_the_sliders_the_model_does_not_follow(tmp_path):
    import json
    import shutil

    from radsynth.models import bundled
    from radsynth.pipelines.texture_fill import SLIDER_EVALUATION

    from radsynth.pipelines.texture_fill import TEXTURE_SLIDER_FEATURES, unfollowed

    copy = tmp_path / "model"
    shutil.copytree(bundled("demo-tumor-bbdm"), copy)
    card = json.loads((copy / "card.json").read_text())
    # the bundled card records its sweep (BENCHMARKS.md); the note names exactly the sliders it says are not followed
    labels = {s.feature: s.label for s in sliders.TEXTURE_SLIDERS}
    named = unfollowed(card, TEXTURE_SLIDER_FEATURES)
    note = sliders.unfollowed_note()
    assert all((labels[f] in note) == (f in named) for f in TEXTURE_SLIDER_FEATURES), note
    assert (note == "") == (not named)
    flat = json.loads(json.dumps(card))
    flat[SLIDER_EVALUATION]["texture"]["glcm_Contrast"].update(spearman=0.5, slope=0.04)   # a flat contrast slider
    (copy / "card.json").write_text(json.dumps(flat))
    assert labels["glcm_Contrast"] in sliders.unfollowed_note(str(copy))
    del card[SLIDER_EVALUATION]
    (copy / "card.json").write_text(json.dumps(card))
    assert sliders.unfollowed_note(str(copy)) == "", "a model with no recorded sweep is not judged"
