"""Model folders: safetensors weights + JSON card with checksum; corrupt or mismatched models are refused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

from radsynth import models
from radsynth.errors import ModelError
from radsynth.models import CARD, WEIGHTS, bundled, load_into, load_model, read_card, register_builder, save_model

torch.set_num_threads(1)


class Tiny(torch.nn.Module):
    def __init__(self, width: int = 4) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, width, 3)
        self.norm = torch.nn.BatchNorm3d(width)   # has buffers, not only parameters
        self.head = torch.nn.Linear(width, 2)


CARD_IN = {"name": "tiny", "kind": "texture", "version": "0.1",
           "architecture": {"width": 4}, "region": {"size": [32, 32, 16]}}


@pytest.fixture(autouse=True)
def no_pickle(monkeypatch):
    """The loader must never unpickle: any call to torch.load fails the test."""
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load was called")
    monkeypatch.setattr(torch, "load", forbidden)


def _saved(tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    module = Tiny()
    module.norm.running_mean.uniform_(-1, 1)
    folder = tmp_path / "model"
    card = save_model(folder, module, CARD_IN)
    return module, folder, card


def test_round_trip(tmp_path):
    module, folder, card = _saved(tmp_path)
    assert (folder / WEIGHTS).is_file() and (folder / CARD).is_file()
    assert len(card["sha256"]) == 64 and card["sha256"] == models.sha256_file(folder / WEIGHTS)
    assert "sha256" not in CARD_IN  # the caller's dict is not modified
    loaded_card, state = load_model(folder, "texture")
    assert loaded_card == card
    assert read_card(folder) == card
    expected = module.state_dict()
    assert set(state) == set(expected)
    for k, v in expected.items():
        assert state[k].dtype == v.dtype and torch.equal(state[k], v), k
    fresh = Tiny()
    assert not torch.equal(fresh.conv.weight, module.conv.weight)
    load_into(fresh, state, folder)
    for k, v in expected.items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_flipped_byte_is_detected(tmp_path):
    _, folder, _ = _saved(tmp_path)
    path = folder / WEIGHTS
    data = bytearray(path.read_bytes())
    data[len(data) - 7] ^= 0x01  # inside the tensor data: still a parseable file
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        load_model(folder, "texture")


def test_truncated_weights_are_refused(tmp_path):
    _, folder, _ = _saved(tmp_path)
    path = folder / WEIGHTS
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ModelError, match="corrupt"):
        load_model(folder, "texture")


def test_missing_folder_card_and_weights(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent", "texture")
    _, folder, _ = _saved(tmp_path)
    (folder / WEIGHTS).unlink()
    with pytest.raises(ModelError, match=WEIGHTS):
        load_model(folder, "texture")
    (folder / CARD).unlink()
    with pytest.raises(ModelError, match=CARD):
        load_model(folder, "texture")


def test_invalid_card(tmp_path):
    _, folder, card = _saved(tmp_path)
    (folder / CARD).write_text("{not json")
    with pytest.raises(ModelError, match="corrupt"):
        read_card(folder)
    with pytest.raises(ModelError):
        load_model(folder, "texture")
    (folder / CARD).write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ModelError):
        load_model(folder, "texture")
    partial = {k: v for k, v in card.items() if k != "architecture"}
    (folder / CARD).write_text(json.dumps(partial))
    with pytest.raises(ModelError, match="architecture"):
        load_model(folder, "texture")


def test_wrong_kind(tmp_path):
    _, folder, _ = _saved(tmp_path)
    with pytest.raises(ModelError, match="texture"):
        load_model(folder, "shape")


def test_load_into_mismatched_architecture(tmp_path):
    _, folder, _ = _saved(tmp_path)
    _, state = load_model(folder, "texture")
    with pytest.raises(ModelError, match="do not match"):
        load_into(Tiny(width=8), state, folder)        # wrong shapes
    missing = {k: v for k, v in state.items() if not k.startswith("head.")}
    with pytest.raises(ModelError, match="do not match"):
        load_into(Tiny(), missing, folder)             # missing keys (strict)
    extra = dict(state, **{"extra.weight": torch.zeros(1)})
    with pytest.raises(ModelError, match="do not match"):
        load_into(Tiny(), extra, folder)               # unexpected keys (strict)


def test_torch_load_is_really_blocked():
    with pytest.raises(AssertionError, match="torch.load"):
        torch.load("anything")


def test_record_in_card_adds_a_key_and_leaves_the_weights(tmp_path):
    _, folder, card = _saved(tmp_path)
    weights = (folder / WEIGHTS).read_bytes()
    updated = models.record_in_card(folder, "slider_evaluation", {"texture": {"x": {"spearman": 1.0}}})
    assert read_card(folder) == updated == dict(card, slider_evaluation={"texture": {"x": {"spearman": 1.0}}})
    assert (folder / WEIGHTS).read_bytes() == weights
    loaded_card, _ = load_model(folder, "texture")   # the checksum still holds
    assert loaded_card["slider_evaluation"]["texture"]["x"]["spearman"] == 1.0


# -- the registry: load(kind, folder, device) over builders registered per card kind ---------------------------



def _tiny_builder(folder, card, state, device):
    module = Tiny(card["architecture"]["width"])
    load_into(module, state, folder)
    return module.to(device).eval()


@pytest.fixture
def tiny_kind():
    """A kind registered by the test, as another module would register its own; removed afterwards."""
    register_builder("texture", _tiny_builder, requires=("region",))
    yield "texture"
    models._BUILDERS.pop("texture", None)


@pytest.fixture
def no_user_models(tmp_path, monkeypatch):
    monkeypatch.setenv(models.USER_MODELS_ENV, str(tmp_path / "user-models"))


def test_load_builds_a_registered_kind(tmp_path, tiny_kind):
    module, folder, _ = _saved(tmp_path)
    loaded = models.load(tiny_kind, folder, "cpu")
    assert isinstance(loaded, Tiny) and not loaded.training
    for k, v in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_unknown_kind_lists_the_known_kinds(tmp_path):
    _, folder, _ = _saved(tmp_path)
    with pytest.raises(ModelError, match=r"known kinds: bbdm-texture, (\S+, )*shape-gan, (\S+, )*vqgan"):
        models.load("no-such-kind", folder, "cpu")
    with pytest.raises(ModelError, match="no-such-kind"):
        models.builder_for("no-such-kind")


def test_register_builder_refuses_a_bad_target():
    with pytest.raises(ValueError):
        register_builder("x", "no_colon_here")
    with pytest.raises(ValueError):
        register_builder("", _tiny_builder)
    assert "x" not in models.known_kinds()


def test_load_refuses_corrupt_weights(tmp_path, tiny_kind):
    _, folder, _ = _saved(tmp_path)
    data = bytearray((folder / WEIGHTS).read_bytes())
    data[-7] ^= 0x01
    (folder / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="corrupt"):
        models.load(tiny_kind, folder, "cpu")


def test_load_refuses_the_wrong_kind(tmp_path, tiny_kind):
    folder = bundled("demo-shape-gan")
    with pytest.raises(ModelError, match="'shape-gan' model, but a 'texture' model"):
        models.load(tiny_kind, folder, "cpu")


def test_load_refuses_a_card_without_the_fields_its_kind_needs(tmp_path, tiny_kind):
    _, folder, card = _saved(tmp_path)
    models.write_card(folder, {k: v for k, v in card.items() if k != "region"})
    with pytest.raises(ModelError, match="lacks the field 'region'"):
        models.load(tiny_kind, folder, "cpu")
    models.write_card(folder, {k: v for k, v in card.items() if k != "sha256"})
    with pytest.raises(ModelError, match="'sha256'"):
        models.load(tiny_kind, folder, "cpu")


def test_load_refuses_an_architecture_that_does_not_fit_the_weights(tmp_path, tiny_kind):
    _, folder, card = _saved(tmp_path)
    models.write_card(folder, dict(card, architecture={"width": 8}))   # the weights have width 4
    with pytest.raises(ModelError, match="do not match the architecture"):
        models.load(tiny_kind, folder, "cpu")
    models.write_card(folder, dict(card, architecture={}))             # the builder cannot read the card
    with pytest.raises(ModelError, match="incomplete or inconsistent"):
        models.load(tiny_kind, folder, "cpu")


def test_import_is_torch_free_and_builders_load_lazily():
    code = ("import sys, radsynth.models as m; m.listing(); "
            "assert 'torch' not in sys.modules, 'torch'; "
            "assert 'radsynth.pipelines.loading' not in sys.modules; "
            "m.load('vqgan', None, 'cpu'); assert 'radsynth.pipelines.loading' in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_default_folder_is_the_bundled_model_of_the_kind(no_user_models):
    from radsynth.pipelines.shape import ShapeModel
    assert models.default_folder("vqgan") == bundled("demo-tumor-vqgan")
    assert models.default_folder("bbdm-texture") == bundled("demo-tumor-bbdm")
    assert isinstance(models.load("shape-gan", None, "cpu"), ShapeModel)


def test_a_catalogued_model_that_is_not_installed_is_named_with_its_source(no_user_models):
    with pytest.raises(ModelError) as caught:
        models.load("maisi-rflow-ct", None, "cpu")
    message = str(caught.value)
    assert "nv-generate-ct-rflow" in message and "huggingface.co/nvidia/NV-Generate-CT" in message
    assert "not installed" in message and "NVIDIA Open Model License" in message and "model_catalog.json" in message
    with pytest.raises(ModelError, match="not in radsynth's model catalogue"):
        models.find("somebody-elses-model")


def test_catalogue_and_bundled_cards_agree(no_user_models):
    entries = models.catalog()
    assert len({e["name"] for e in entries}) == len(entries)
    for entry in entries:
        assert entry["licence"] and entry["source"] and entry["kind"], entry["name"]
    for entry in (e for e in entries if e["bundled"]):
        found = models.find(entry["name"])
        assert found.source == "bundled" and found.card["kind"] == entry["kind"]
        card = found.card
        assert card["licence"] == entry["licence"] and bool(card.get("demo")) == entry["demo"]
        assert card["sha256"] == models.sha256_file(found.folder / WEIGHTS)
        timing = card["timing"]
        assert timing["cpu_s"] > 0 and timing["forward"]
        assert timing["gpu_s"] is not None or timing["gpu_reason"]
    bundled_kinds = {e["kind"] for e in entries if e["bundled"]}
    for kind in bundled_kinds:   # a kind with a bundled model has it installed as its default
        assert models.default_folder(kind).is_dir()
    for kind in set(models.known_kinds()) - bundled_kinds:   # the others need a folder, and say so by name
        with pytest.raises(ModelError, match="is not installed|No default model"):
            models.default_folder(kind)


def test_texture_model_and_its_vqgan_must_belong_together(tmp_path, no_user_models):
    from radsynth.pipelines.loading import TumorModels, load_models
    for name in ("demo-tumor-bbdm", "demo-tumor-vqgan"):
        shutil.copytree(bundled(name), tmp_path / name)
    texture = tmp_path / "demo-tumor-bbdm"
    assert isinstance(models.load("bbdm-texture", texture, "cpu"), TumorModels)   # the sibling VQ-GAN
    with pytest.raises(ModelError, match="'shape-gan' model, but a 'vqgan'"):
        load_models(texture, bundled("demo-shape-gan"), device="cpu")
    card = read_card(texture)
    models.write_card(texture, dict(card, vqgan=dict(card["vqgan"], sha256="0" * 64)))
    with pytest.raises(ModelError, match="different VQ-GAN"):
        load_models(texture, device="cpu")
    shutil.rmtree(tmp_path / "demo-tumor-vqgan")   # no sibling and no installed VQ-GAN with that sha256
    with pytest.raises(ModelError, match="needs the VQ-GAN demo-tumor-vqgan"):
        load_models(texture, device="cpu")


def test_timing_script_measures_a_forward():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).parents[2] / "scripts" / "measure_model_timing.py"
    spec = importlib.util.spec_from_file_location("measure_model_timing", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert set(script.PROBES) == {e["kind"] for e in models.catalog() if e["bundled"]}   # every bundled model timed
    seconds, what = script.measure("shape-gan", bundled("demo-shape-gan"), torch.device("cpu"), repeats=1)
    assert seconds > 0 and "32^3" in what
