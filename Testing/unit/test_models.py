"""Model folders: safetensors weights + JSON card with checksum; corrupt or mismatched models are refused."""

from __future__ import annotations

import json

import pytest
import torch

from radsynth import models
from radsynth.errors import ModelError
from radsynth.models import CARD, WEIGHTS, load_into, load_model, read_card, save_model

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
