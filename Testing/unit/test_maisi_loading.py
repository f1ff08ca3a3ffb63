"""MAISI-family loading: a network config in the published NV-Generate-CT layout, MAISI-architecture networks at
small channel counts with random weights saved the way the published checkpoints are, converted to a RadSynth
model folder, loaded through the model registry; wrong keys, shapes, files and configs give clear errors and
leave nothing on disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from maisi_support import wake

from radsynth import models
from radsynth.errors import ModelError
from radsynth.nets import maisi
from radsynth.nets import maisi_config as mc

torch.set_flush_denormal(True)
PARTS = ("autoencoder", "diffusion", "controlnet")


def _published_layout(folder: Path, config: dict, scale_factor: float = 1.7, seed: int = 0):
    """Tiny MAISI networks written as NV-Generate-CT publishes them: config JSON with "@" references,
    autoencoder as a bare state dict, diffusion as {"unet_state_dict", "scale_factor"}, ControlNet as
    {"controlnet_state_dict"}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config_network_rflow.json").write_text(json.dumps(config, indent=1))
    arch = mc.parse_network_config(config)
    torch.manual_seed(seed)
    nets = {p: maisi.build_network(p, arch[mc.PARTS[p][0]]) for p in PARTS}
    wake(nets)
    torch.save(nets["autoencoder"].state_dict(), folder / "autoencoder_v1.pt")
    torch.save({"unet_state_dict": nets["diffusion"].state_dict(), "scale_factor": torch.tensor(scale_factor),
                "epoch": 3}, folder / "diff_unet_3d_rflow-ct.pt")
    torch.save({"controlnet_state_dict": nets["controlnet"].state_dict(), "epoch": 3},
               folder / "controlnet_3d_rflow-ct.pt")
    return nets


@pytest.fixture
def registered():
    """The MAISI kinds are built into the model registry (radsynth.models); this checks they are there."""
    assert set(maisi.KINDS.values()) <= set(models.known_kinds())


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    folder = tmp_path_factory.mktemp("published")
    config = mc.example_config("tiny")
    config["mask_generation_autoencoder_def"] = {"_target_": "scripts.whatever.NotUsed"}   # ignored entry
    nets = _published_layout(folder, config)
    return folder, nets


def _convert(folder: Path, out: Path, **kw):
    args = dict(config=folder / "config_network_rflow.json", autoencoder=folder / "autoencoder_v1.pt",
                diffusion=folder / "diff_unet_3d_rflow-ct.pt", controlnet=folder / "controlnet_3d_rflow-ct.pt",
                out=out, name="tiny-maisi", version="1")
    args.update(kw)
    return maisi.convert(**args)


def _nothing_left(parent: Path, name: str) -> None:
    assert not (parent / name).exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{name}-")], "a staging folder was left"


# ------------------------------------------------------------------------------------------------------ config

def test_config_references_resolve_and_only_the_generator_parts_are_kept(published):
    folder, _ = published
    arch = mc.parse_network_config(folder / "config_network_rflow.json")
    assert arch["autoencoder_def"]["in_channels"] == 1            # "@image_channels"
    assert arch["diffusion_unet_def"]["in_channels"] == 4          # "@latent_channels"
    assert arch["diffusion_unet_def"]["include_top_region_index_input"] is False   # "@include_body_region"
    assert set(arch) == {"spatial_dims", "image_channels", "latent_channels", "autoencoder_def",
                         "diffusion_unet_def", "controlnet_def", "noise_scheduler"}
    assert mc.scheduler_spec(arch["noise_scheduler"])["type"] == "rflow"
    assert mc.downsample_factor(arch) == 4 and mc.size_multiple(arch) == 32


def test_published_size_config_builds_the_published_networks():
    arch = mc.parse_network_config(mc.example_config("published"))
    with torch.device("meta"):       # shapes only: no 200 M random numbers drawn
        ae = maisi.build_network("autoencoder", arch["autoencoder_def"])
        unet = maisi.build_network("diffusion", arch["diffusion_unet_def"])
    n_ae = sum(p.numel() for p in ae.parameters())
    n_unet = sum(p.numel() for p in unet.parameters())
    assert 20e6 < n_ae < 22e6 and 150e6 < n_unet < 250e6, (n_ae, n_unet)


@pytest.mark.parametrize("edit, says", [
    (lambda c: c["diffusion_unet_def"].update(_target_="os.system"), "builds only MONAI"),
    (lambda c: c["autoencoder_def"].update(_target_="monai.networks.nets.UNet"), "AutoencoderKlMaisi"),
    (lambda c: c["autoencoder_def"].update(in_channels="$__import__('os').getcwd()"), "does not evaluate"),
    (lambda c: c["autoencoder_def"].update(in_channels="@no_such_value"), "not a top-level"),
    (lambda c: c.pop("diffusion_unet_def"), "no 'diffusion_unet_def'"),
    (lambda c: c.pop("noise_scheduler"), "noise_scheduler"),
    (lambda c: c["noise_scheduler"].update(_target_="monai.networks.schedulers.PNDMScheduler"), "RFlowScheduler"),
])
def test_config_refuses_code_and_foreign_layouts(edit, says):
    config = mc.example_config("tiny")
    edit(config)
    with pytest.raises(ModelError, match=says):
        mc.parse_network_config(config)


def test_config_file_errors_are_clear(tmp_path):
    with pytest.raises(ModelError, match="Could not read"):
        mc.parse_network_config(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ModelError, match="not valid JSON"):
        mc.parse_network_config(tmp_path / "bad.json")


# --------------------------------------------------------------------------------------------- convert + load

def test_convert_then_load_gives_the_same_networks(registered, published, tmp_path):
    folder, nets = published
    card = _convert(folder, tmp_path / "model")
    assert card["kind"] == "maisi-rflow-ct"
    assert card["sha256"] == models.sha256_file(tmp_path / "model" / models.WEIGHTS)
    assert card["latent"] == {"scale_factor": pytest.approx(1.7), "channels": 4, "downsample": 4}
    assert card["source"]["diffusion"]["sha256"] == models.sha256_file(folder / "diff_unet_3d_rflow-ct.pt")
    assert card["networks"] == list(PARTS) and card["conditioning"]["mask"] is True
    assert card["parameters"]["diffusion"] == sum(p.numel() for p in nets["diffusion"].parameters())
    assert card["converted"]["controlnet_weights_from_unet"] == 0

    loaded = models.load("maisi-rflow-ct", tmp_path / "model", "cpu")
    for part, attr in (("autoencoder", "autoencoder"), ("diffusion", "diffusion"), ("controlnet", "controlnet")):
        original, got = nets[part].state_dict(), getattr(loaded, attr).state_dict()
        assert set(original) == set(got)
        assert all(torch.equal(original[k], got[k]) for k in original), part
    x = torch.randn(1, 4, 8, 8, 8)
    args = dict(timesteps=torch.tensor([300.0]), class_labels=torch.tensor([1]),
                spacing_tensor=torch.tensor([[150.0, 150.0, 200.0]]))
    with torch.no_grad():
        nets["diffusion"].eval()
        assert torch.allclose(loaded.diffusion(x, **args), nets["diffusion"](x, **args))
    assert loaded.versions == {"tiny-maisi": "1"} and loaded.scale_factor == pytest.approx(1.7)


def test_models_add_installs_a_converted_model(registered, published, tmp_path, monkeypatch):
    folder, _ = published
    _convert(folder, tmp_path / "model")
    monkeypatch.setenv(models.USER_MODELS_ENV, str(tmp_path / "installed"))
    installed = models.add(tmp_path / "model")
    assert installed.folder == tmp_path / "installed" / "tiny-maisi-1"
    loaded = models.load("maisi-rflow-ct", installed.folder, "cpu")
    assert loaded.controlnet is not None


def test_a_renamed_key_is_refused_with_its_name_and_nothing_is_written(published, tmp_path):
    folder, nets = published
    state = dict(nets["diffusion"].state_dict())
    state["conv_in.conv.weight_renamed"] = state.pop("conv_in.conv.weight")
    torch.save({"unet_state_dict": state, "scale_factor": torch.tensor(1.0)}, tmp_path / "diff.pt")
    with pytest.raises(ModelError) as err:
        _convert(folder, tmp_path / "model", diffusion=tmp_path / "diff.pt")
    text = str(err.value)
    assert "diffusion" in text and "1 missing (conv_in.conv.weight)" in text
    assert "1 unexpected (conv_in.conv.weight_renamed)" in text
    _nothing_left(tmp_path, "model")


def test_a_wrong_shape_is_refused_with_both_shapes(published, tmp_path):
    folder, nets = published
    state = dict(nets["autoencoder"].state_dict())
    key = next(k for k in state if k.endswith("conv.weight"))
    state[key] = torch.zeros(3, *state[key].shape[1:])
    torch.save(state, tmp_path / "ae.pt")
    with pytest.raises(ModelError, match=r"autoencoder weights .* 1 with another shape") as err:
        _convert(folder, tmp_path / "model", autoencoder=tmp_path / "ae.pt")
    assert f"(3, " in str(err.value) and "the config builds (8, " in str(err.value)
    _nothing_left(tmp_path, "model")


def test_weights_for_another_config_are_refused(published, tmp_path):
    folder, _ = published
    config = mc.example_config("tiny")
    config["diffusion_unet_def"]["num_channels"] = [8, 16, 32, 32]
    (tmp_path / "other.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="with another shape.*Use the network config published"):
        _convert(folder, tmp_path / "model", config=tmp_path / "other.json")
    _nothing_left(tmp_path, "model")


class _Trap:
    """Unpickling this would create the marker file: a weight file that runs code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_not_opened(published, tmp_path):
    folder, nets = published
    marker = tmp_path / "code-ran"
    torch.save({"unet_state_dict": nets["diffusion"].state_dict(), "scale_factor": torch.tensor(1.0),
                "hook": _Trap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ModelError, match="Python objects other than tensors"):
        _convert(folder, tmp_path / "model", diffusion=tmp_path / "evil.pt")
    assert not marker.exists()
    _nothing_left(tmp_path, "model")


def test_checkpoint_layouts_all_read_to_the_same_state(published, tmp_path):
    from safetensors.torch import save_file

    _, nets = published
    state = nets["autoencoder"].state_dict()
    torch.save({"state_dict": state, "epoch": 1}, tmp_path / "a.pt")
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "b.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "c.safetensors"))
    for name in ("a.pt", "b.pt", "c.safetensors"):
        got, _ = maisi.read_checkpoint(tmp_path / name)
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state), name
    torch.save({"optimizer": {"lr": 1e-4}}, tmp_path / "d.pt")
    with pytest.raises(ModelError, match="without a state dict"):
        maisi.read_checkpoint(tmp_path / "d.pt")
    (tmp_path / "e.pt").write_bytes(b"\x00not a checkpoint")
    with pytest.raises(ModelError, match="corrupt or not a PyTorch checkpoint"):
        maisi.read_checkpoint(tmp_path / "e.pt")


def test_scale_factor_is_required_and_must_be_positive(published, tmp_path):
    folder, nets = published
    torch.save({"unet_state_dict": nets["diffusion"].state_dict()}, tmp_path / "diff.pt")
    with pytest.raises(ModelError, match="holds no scale_factor"):
        _convert(folder, tmp_path / "model", diffusion=tmp_path / "diff.pt")
    with pytest.raises(ModelError, match="positive"):
        _convert(folder, tmp_path / "model", diffusion=tmp_path / "diff.pt", scale_factor=-2.0)
    card = _convert(folder, tmp_path / "model", diffusion=tmp_path / "diff.pt", scale_factor=0.9)
    assert card["latent"]["scale_factor"] == pytest.approx(0.9)


def test_controlnet_weights_missing_from_its_file_come_from_the_unet(registered, published, tmp_path):
    """NV-Generate-CTMR copies the UNet's weights into the ControlNet before loading its file non-strictly;
    radsynth does the same for keys both have (and counts them), and refuses keys the UNet cannot supply."""
    folder, nets = published
    state = dict(nets["controlnet"].state_dict())
    shared = [k for k in state if k in nets["diffusion"].state_dict() and k.startswith("conv_in")]
    for k in shared:
        del state[k]
    torch.save({"controlnet_state_dict": state}, tmp_path / "cn.pt")
    card = _convert(folder, tmp_path / "model", controlnet=tmp_path / "cn.pt")
    assert card["converted"]["controlnet_weights_from_unet"] == len(shared) == 2
    loaded = models.load("maisi-rflow-ct", tmp_path / "model", "cpu")
    assert torch.equal(loaded.controlnet.state_dict()["conv_in.conv.weight"],
                       nets["diffusion"].state_dict()["conv_in.conv.weight"])
    own = next(k for k in state if k.startswith("controlnet_cond_embedding"))
    del state[own]
    torch.save({"controlnet_state_dict": state}, tmp_path / "cn2.pt")
    with pytest.raises(ModelError, match=f"controlnet weights .* 1 missing \\({own}\\)"):
        _convert(folder, tmp_path / "model2", controlnet=tmp_path / "cn2.pt")


def test_a_model_folder_with_foreign_weights_is_refused_by_load(registered, published, tmp_path):
    folder, _ = published
    _convert(folder, tmp_path / "model")
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "model" / models.WEIGHTS
    state = load_file(str(weights))
    state["refiner.conv.weight"] = torch.zeros(1)
    save_file(state, str(weights))
    models.record_in_card(tmp_path / "model", "sha256", models.sha256_file(weights))
    with pytest.raises(ModelError, match="belongs to none of the networks"):
        models.load("maisi-rflow-ct", tmp_path / "model", "cpu")


def test_converting_into_an_existing_folder_is_refused(published, tmp_path):
    folder, _ = published
    (tmp_path / "model").mkdir()
    with pytest.raises(ModelError, match="already exists"):
        _convert(folder, tmp_path / "model")
    assert os.listdir(tmp_path / "model") == []
