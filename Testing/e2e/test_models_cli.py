"""``radsynth models list|verify|add`` through the typer app, on the bundled models and on models a test makes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from radsynth import models
from radsynth.cli.models import models_app
from radsynth.models import WEIGHTS, bundled, load_into, read_card, save_model, sha256_file, write_card

torch.set_num_threads(1)
runner = CliRunner()


class Small(torch.nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(1, width, 3)
        self.head = torch.nn.Linear(width, 1)


def _build_small(folder, card, state, device):
    module = Small(card["architecture"]["width"])
    load_into(module, state, folder)
    return module.to(device)


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    root = tmp_path / "user-models"
    monkeypatch.setenv(models.USER_MODELS_ENV, str(root))
    models.register_builder("small-test", _build_small)
    yield root
    models._BUILDERS.pop("small-test", None)


def _small(tmp_path, name="my-small", version="1.0", width=3, **extra) -> Path:
    torch.manual_seed(0)
    folder = tmp_path / "made" / f"{name}-{version}"
    save_model(folder, Small(width), {"name": name, "kind": "small-test", "version": version,
                                      "architecture": {"width": width}, "licence": "CC-BY-4.0", **extra})
    return folder


def _rows(result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output
    return {r["name"]: r for r in json.loads(result.output)}


def _invoke(*args: str):
    return runner.invoke(models_app, list(args))


def test_list_shows_bundled_and_catalogued_models(user_dir):
    rows = _rows(_invoke("list", "--json"))
    for name in ("demo-tumor-vqgan", "demo-tumor-bbdm", "demo-shape-gan"):
        row = rows[name]
        assert row["installed"] == "bundled" and row["demo"] and row["licence"] == "Apache-2.0"
        assert row["sha256"] == sha256_file(bundled(name) / WEIGHTS)
        assert row["size_bytes"] == (bundled(name) / WEIGHTS).stat().st_size
        assert row["cpu_s"] > 0 and row["gpu_s"] is None and row["timing_note"]
    maisi = rows["nv-generate-ct-rflow"]
    assert maisi["installed"] is None and not maisi["demo"] and "huggingface.co" in maisi["source"]
    table = _invoke("list")
    assert table.exit_code == 0
    assert "demo-tumor-bbdm" in table.output and "3b54da20c765" in table.output and "not installed" in table.output


def test_verify_all_bundled_models(user_dir):
    result = _invoke("verify")
    assert result.exit_code == 0, result.output
    bundled = [e["name"] for e in models.catalog() if e["bundled"]]
    assert len(bundled) >= 3 and result.output.count("ok ") == len(bundled)
    assert all(name in result.output for name in bundled)


def test_verify_refuses_corrupt_and_mismatched_models(tmp_path, user_dir):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(bundled("demo-shape-gan"), corrupt)
    data = bytearray((corrupt / WEIGHTS).read_bytes())
    data[-11] ^= 0x04
    (corrupt / WEIGHTS).write_bytes(bytes(data))
    result = _invoke("verify", str(corrupt))
    assert result.exit_code == 2 and "corrupt or were changed" in result.output

    mismatched = tmp_path / "mismatched"
    shutil.copytree(bundled("demo-shape-gan"), mismatched)
    card = read_card(mismatched)
    write_card(mismatched, dict(card, architecture=dict(card["architecture"], channels=[96, 48, 24, 16])))
    result = _invoke("verify", str(mismatched))
    assert result.exit_code == 2 and "do not match the architecture" in result.output

    result = _invoke("verify", "no-such-model")
    assert result.exit_code == 2 and "not installed" in result.output


def test_add_a_model_the_user_made(tmp_path, user_dir):
    source = _small(tmp_path)
    before = sorted(p.name for p in source.iterdir()), (source / "card.json").read_text()
    result = _invoke("add", str(source))
    assert result.exit_code == 0, result.output
    added = user_dir / "my-small-1.0"
    assert sorted(p.name for p in added.iterdir()) == ["card.json", WEIGHTS]
    assert (sorted(p.name for p in source.iterdir()), (source / "card.json").read_text()) == before
    rows = _rows(_invoke("list", "--json"))
    assert rows["my-small"]["installed"] == "user" and rows["my-small"]["licence"] == "CC-BY-4.0"
    assert rows["my-small"]["timing_note"] == "not measured"
    result = _invoke("verify", "my-small")
    assert result.exit_code == 0 and "my-small 1.0 (small-test)" in result.output
    assert isinstance(models.load("small-test", added, "cpu"), Small)

    again = _invoke("add", str(source))
    assert again.exit_code == 2 and "already installed" in again.output
    newer = _invoke("add", str(_small(tmp_path, version="1.1")))
    assert newer.exit_code == 0, newer.output
    assert sorted(p.name for p in user_dir.iterdir()) == ["my-small-1.0", "my-small-1.1"]


def test_add_without_sha256_needs_trust(tmp_path, user_dir):
    source = _small(tmp_path, name="untrusted")
    card = read_card(source)
    write_card(source, {k: v for k, v in card.items() if k != "sha256"})
    refused = _invoke("add", str(source))
    assert refused.exit_code == 2 and "--trust" in refused.output and "no sha256" in refused.output
    assert not user_dir.exists()
    trusted = _invoke("add", str(source), "--trust")
    assert trusted.exit_code == 0, trusted.output
    copied = read_card(user_dir / "untrusted-1.0")
    assert copied["sha256"] == card["sha256"] == sha256_file(source / WEIGHTS)
    assert copied["sha256_recorded"]["by"] == "radsynth models add --trust"
    assert "sha256" not in json.loads((source / "card.json").read_text())   # the user's folder is unchanged


def test_add_refuses_bad_models_and_leaves_nothing(tmp_path, user_dir):
    mismatched = _small(tmp_path, name="wrong-arch")
    write_card(mismatched, dict(read_card(mismatched), architecture={"width": 5}))
    unknown = _small(tmp_path, name="alien")
    write_card(unknown, dict(read_card(unknown), kind="alien-kind"))
    corrupt = _small(tmp_path, name="broken")
    data = bytearray((corrupt / WEIGHTS).read_bytes())
    data[-3] ^= 0x10
    (corrupt / WEIGHTS).write_bytes(bytes(data))
    bad_name = _small(tmp_path, name="bad/name")
    expected = {mismatched: "do not match", unknown: "known kinds", corrupt: "corrupt", bad_name: "unusable name"}
    for folder, message in expected.items():
        result = _invoke("add", str(folder))
        assert result.exit_code == 2 and message in result.output, (folder, result.output)
    assert not user_dir.exists() or not any(user_dir.iterdir())   # no staging folder or half copy left
    duplicate = _invoke("add", str(bundled("demo-shape-gan")))
    assert duplicate.exit_code == 2 and "already installed (bundled" in duplicate.output


def test_add_a_texture_model_finds_its_vqgan_by_checksum(tmp_path, user_dir):
    """A retrained texture model added on its own uses the installed VQ-GAN it names (by sha256)."""
    source = tmp_path / "retrained-bbdm"
    shutil.copytree(bundled("demo-tumor-bbdm"), source)
    write_card(source, dict(read_card(source), name="my-bbdm", version="0.3.0-local"))
    result = _invoke("add", str(source))
    assert result.exit_code == 0, result.output
    loaded = models.load("bbdm-texture", user_dir / "my-bbdm-0.3.0-local", "cpu")
    assert loaded.vq_card["name"] == "demo-tumor-vqgan"
    assert _rows(_invoke("list", "--json"))["my-bbdm"]["installed"] == "user"
