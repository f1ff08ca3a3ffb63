"""generate volume with a volume-ldm model (radsynth.train.volume's card, random weights made here): the latent
scale, determinism, output geometry, the model's own mask channels, segment mapping, refusals before any work and
corrupt or mismatched model files."""

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from radsynth import models
from radsynth.errors import CancelledError, InvalidMaskError, InvalidOptionError, ModelError
from radsynth.pipelines.generate import latent
from radsynth.pipelines.generate import whole_volume as wv
from radsynth.progress import CancelToken
from radsynth.train import volume as tv
from radsynth.volume import Volume

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny-volume-ldm"
    tv.untrained_model(out, scale_factor=0.5)
    return out


@pytest.fixture(scope="module")
def model(folder):
    torch.set_num_threads(1)
    return wv.load(str(folder), "cpu")


class _Spy(torch.nn.Module):
    """Records the diffusion UNet's inputs."""

    def __init__(self, net):
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x, timesteps, **kw):
        self.inputs.append(x.detach().clone())
        return self.net(x=x, timesteps=timesteps, **kw)


def _spied(model):
    return dataclasses.replace(model, diffusion=_Spy(model.diffusion))


def _segmentation(offset_mm=(0.0, 0.0, 0.0)) -> Volume:
    """Auto-map labels on a 40×60×60 grid at 5 mm: body (1), left lung (2), right lung (3), trachea (4)."""
    k, j, i = np.mgrid[0:40, 0:60, 0:60]
    a = np.zeros((40, 60, 60), np.uint8)
    a[((i - 30) / 25) ** 2 + ((j - 30) / 18) ** 2 < 1] = 1
    a[(((i - 19) / 8) ** 2 + ((j - 28) / 10) ** 2 < 1) & (k > 5) & (k < 35)] = 3   # patient's right: low x (LPS)
    a[(((i - 41) / 8) ** 2 + ((j - 28) / 10) ** 2 < 1) & (k > 5) & (k < 35)] = 2
    a[((i - 30) ** 2 + (j - 22) ** 2 < 4) & (k >= 30)] = 4
    return Volume(a, tuple(-147.5 + o for o in offset_mm), (5.0, 5.0, 5.0), IDENTITY)


def test_latent_scale_round_trip_and_the_trainers_factor():
    z = torch.randn(2, 4, 6, 6, 6) * 3.0 + 0.2
    factor = tv.measure_scale_factor([(z[0].numpy(), None), (z[1].numpy(), None)])
    assert latent.scale_latent(z, factor).std().item() == pytest.approx(1.0, abs=1e-4)
    assert torch.allclose(latent.unscale_latent(latent.scale_latent(z, factor), factor), z, atol=1e-6)


def test_same_seed_same_volume_other_seed_another(model):
    a = wv.generate(model, steps=3, seed=7).volume.array
    b = wv.generate(model, steps=3, seed=7).volume.array
    c = wv.generate(model, steps=3, seed=8).volume.array
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_geometry_hu_and_the_synthetic_mark(model):
    result = wv.generate(model, steps=2, seed=0)
    v = result.volume
    assert v.shape == (32, 32, 32) and v.spacing == (8.0, 8.0, 8.0)
    assert v.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)      # RAS arrays in LPS
    center = v.index_to_physical(np.array([[15.5, 15.5, 15.5]]))[0]
    assert np.allclose(center, 0.0)
    assert v.array.dtype == np.int16 and -1000 <= v.array.min() and v.array.max() <= 1000
    assert v.is_synthetic and result.settings["fov_mm"] == [256.0, 256.0, 256.0]
    assert result.settings["latent_scale_factor"] == 0.5 and result.settings["follows_maps"] is False

    # with a segmentation the grid is centred on its labelled voxels (so it lies over it in Slicer)
    seg = _segmentation(offset_mm=(40.0, -20.0, 100.0))
    guided = wv.generate(model, steps=2, seed=0, segmentation=seg).volume
    box = np.argwhere(seg.array > 0)
    expected = seg.index_to_physical(((box.min(0) + box.max(0)) / 2.0)[None])[0]
    assert np.allclose(guided.index_to_physical(np.array([[15.5, 15.5, 15.5]]))[0], expected)


def test_the_maps_reach_the_unet_every_step_and_change_the_volume(model):
    spied = _spied(model)
    seg = _segmentation()
    guided = wv.generate(spied, steps=3, seed=1, segmentation=seg)
    inputs = spied.diffusion.inputs
    assert len(inputs) == 3 and all(x.shape == (1, 6, 8, 8, 8) for x in inputs)
    body, lung = inputs[0][0, 4], inputs[0][0, 5]
    assert torch.equal(inputs[0][:, 4:], inputs[2][:, 4:])                      # the same maps every step
    assert 0 < lung.sum() < body.sum() and float(body.max()) == 1.0 and float(body.min()) == 0.0
    # RAS arrays: x runs toward the patient's right, so the left lung (2; +x in LPS) lies at low x
    xyz = wv.segmentation_on_grid(seg, (32, 32, 32), (8, 8, 8), "RAS")[0]
    assert np.argwhere(xyz == 2)[:, 0].mean() < 16 < np.argwhere(xyz == 3)[:, 0].mean()
    assert guided.settings["segments_mapped"] == {"body": [1, 2, 3, 4], "lung": [2, 3]}
    assert any("trachea count as body" in w for w in guided.warnings)

    spied.diffusion.inputs.clear()
    unguided = wv.generate(spied, steps=3, seed=1)
    assert all(not x[:, 4:].any() for x in spied.diffusion.inputs)            # no mask: the dropout condition
    assert not np.array_equal(unguided.volume.array, guided.volume.array)


def test_totalsegmentator_names_are_mapped_and_the_rest_listed(model):
    names = {1: "body", 2: "lung_upper_lobe_left", 3: "liver", 4: "lung_lower_lobe_right", 5: "heart"}
    m = wv.map_segments([1, 2, 3, 4, 5], names, model.card)
    assert m.targets["lung"] == [2, 4] and m.targets["body"] == [1, 2, 3, 4, 5]
    assert any("liver, heart count as body" in n for n in m.notes)
    with pytest.raises(InvalidMaskError, match="needs a body segment.*lung_upper_lobe_left"):
        wv.map_segments([2], {2: "lung_upper_lobe_left"}, model.card)
    with pytest.raises(InvalidMaskError, match="label value.*7.*no name"):
        wv.map_segments([1, 7], None, model.card)
    assert wv.normalise("Kidney-Right") == "right kidney"
    assert wv.normalise("lung_upper_lobe_left") == "left lung upper lobe"


def test_controlnet_models_map_onto_their_label_dict(model):
    card = dict(model.card, conditioning={"mask": True, "required_labels": ["body"]},
                label_dict={"liver": 1, "left kidney": 14, "body": 200})
    m = wv.map_segments([1, 2, 3], {1: "kidney_left", 2: "body", 3: "brain"}, card)
    assert m.targets == {"left kidney": [1], "body": [2]} and m.unmapped == ["brain"]
    labels = wv.conditioning(card, np.array([[[1, 2], [3, 0]]]), m)["labels"]
    assert labels.tolist() == [[[14, 200], [0, 0]]]
    with pytest.raises(InvalidMaskError, match="needs a body"):
        wv.map_segments([1], {1: "liver"}, card)
    with pytest.raises(ModelError, match="no label_dict"):
        wv.map_segments([1], {1: "liver"}, dict(card, label_dict={}))
    with pytest.raises(InvalidOptionError, match="cannot follow an organ mask"):
        wv.map_segments([1], {1: "liver"}, dict(card, conditioning={}))


@pytest.mark.parametrize("options, says", [
    ({"size": "64,64,64"}, "not one this model supports: x one of 32"),
    ({"spacing": "4,4,4"}, "spacing along x must be between"),
    ({"size": "32,32"}, "three numbers"),
    ({"sampler": "ddim"}, "trained with rflow"),
    ({"available": 1e6}, "needs about"),
    ({"segmentation": Volume(np.zeros((4, 4, 4), np.uint8), (0, 0, 0), (1, 1, 1), IDENTITY)}, "empty"),
])
def test_bad_requests_are_refused_before_any_work(model, options, says):
    spied = _spied(model)
    with pytest.raises((InvalidOptionError, InvalidMaskError), match=says):
        wv.generate(spied, steps=2, **options)
    assert spied.diffusion.inputs == []


def test_cancel_stops_within_a_step(model):
    spied = _spied(model)
    token = CancelToken()

    def progress(fraction, stage):
        if stage == "diffusion" and len(spied.diffusion.inputs) == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        wv.generate(spied, steps=10, progress=progress, cancel=token)
    assert len(spied.diffusion.inputs) == 2


def test_corrupt_and_mismatched_model_files_are_clear_errors(folder, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(folder, corrupt)
    with open(corrupt / models.WEIGHTS, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(ModelError, match="corrupt or were changed"):
        wv.load(str(corrupt), "cpu")

    mismatched = tmp_path / "mismatched"
    shutil.copytree(folder, mismatched)
    card = models.read_card(mismatched)
    card["architecture"]["diffusion_unet_def"]["num_channels"] = [16, 32, 32]
    models.write_card(mismatched, card)
    with pytest.raises(ModelError, match="do not fit the diffusion network"):
        wv.load(str(mismatched), "cpu")

    other = tmp_path / "other-kind"
    shutil.copytree(folder, other)
    models.write_card(other, dict(models.read_card(other), kind="icnet"))
    with pytest.raises(ModelError, match="generate volume runs volume-ldm"):
        wv.load(str(other), "cpu")


def test_the_registered_operation_runs_without_an_image(folder):
    from radsynth.pipelines import registry
    from radsynth.worker import Runner

    op = registry.get("volume")
    assert op.needs_image is False and op.needs_mask is False and op.module == "generate"
    with Runner(worker=False, device="cpu") as runner:
        result = runner("volume", None, None, model=str(folder), steps=2, seed=4, segmentation=_segmentation())
    assert result.volume.is_synthetic and result.settings["follows_maps"] is True
    assert result.volume.shape == (32, 32, 32)


def test_a_maisi_controlnet_model_follows_a_totalsegmentator_segmentation(tmp_path):
    """The MAISI path: a tiny MAISI rflow-ct model with a ControlNet, converted with a label_dict; segment names
    are mapped onto its labels and the label map drives the ControlNet every step."""
    from radsynth.nets import maisi
    from radsynth.nets import maisi_config as mc

    config = mc.example_config("tiny")
    arch = mc.parse_network_config(config)
    torch.manual_seed(0)
    nets = {p: maisi.build_network(p, arch[mc.PARTS[p][0]]) for p in ("autoencoder", "diffusion", "controlnet")}
    paths = maisi.save_checkpoints(tmp_path / "published", nets, 1.0)
    grid = dict(mc.MAISI_CT_GRID, size_choices=None, min_fov_mm=None, spacing_range_mm=[[0.5, 10]] * 3,
                default_size=[32, 32, 32], default_spacing_mm=[8.0, 8.0, 8.0])
    maisi.convert(config, paths["autoencoder"], paths["diffusion"], tmp_path / "m", name="tiny-maisi",
                  controlnet=paths["controlnet"], grid=grid,
                  label_dict={"liver": 1, "left kidney": 14, "body": 200}, required_labels=("body",))
    model = wv.load(str(tmp_path / "m"), "cpu")
    calls = []
    inner = model.controlnet

    class Spy(torch.nn.Module):
        def forward(self, x, timesteps, controlnet_cond, **kw):
            calls.append(controlnet_cond.detach().clone())
            return inner(x=x, timesteps=timesteps, controlnet_cond=controlnet_cond, **kw)

    spied = dataclasses.replace(model, controlnet=Spy())
    a = np.zeros((20, 20, 20), np.uint8)
    a[2:18, 2:18, 2:18] = 1
    a[5:10, 5:10, 5:10] = 2
    seg = Volume(a, (0.0, 0.0, 0.0), (10.0, 10.0, 10.0), IDENTITY)
    names = {"1": "body", "2": "kidney_left"}
    result = wv.generate(spied, steps=2, body_region=None, segmentation=seg, segment_names=names)
    assert len(calls) == 2 and calls[0].shape == (1, 8, 32, 32, 32)
    planes = calls[0][0].to(torch.int64)
    values = sum(planes[b] << b for b in range(8))
    assert set(torch.unique(values).tolist()) == {0, 14, 200}
    assert result.settings["follows_labels"] is True and result.settings["segments_mapped"] == {
        "body": [1], "left kidney": [2]}
    with pytest.raises(InvalidMaskError, match="needs a body"):
        wv.generate(spied, steps=2, segmentation=seg, segment_names={"1": "liver", "2": "kidney_left"})
