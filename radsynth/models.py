"""Model registry: a model is a folder holding ``weights.safetensors`` and ``card.json``.

The card carries everything needed to use the weights correctly (architecture, region spec, feature list and
normalization, latent statistics, training data, version) plus the sha256 of the weights. Loading never
unpickles: safetensors holds tensors only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .errors import ModelError

WEIGHTS = "weights.safetensors"
CARD = "card.json"
BUNDLED = Path(__file__).parent / "weights"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bundled(name: str) -> Path:
    return BUNDLED / name


def read_card(folder: Path | str) -> dict[str, Any]:
    folder = Path(folder)
    card_path = folder / CARD
    if not folder.is_dir():
        raise ModelError(f"Model folder not found: {folder}")
    if not card_path.is_file():
        raise ModelError(f"Model folder {folder} has no {CARD}; it is not a RadSynth model.")
    try:
        card = json.loads(card_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"The model card {card_path} is corrupt ({exc}).") from exc
    for key in ("name", "kind", "version", "architecture", "sha256"):
        if key not in card:
            raise ModelError(f"The model card {card_path} lacks the required field {key!r}.")
    return card


def load_model(folder: Path | str, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (card, state_dict) after checking the kind and the weights' checksum."""
    folder = Path(folder)
    card = read_card(folder)
    if card["kind"] != kind:
        raise ModelError(f"{folder} holds a {card['kind']!r} model, but a {kind!r} model is needed here.")
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"Model folder {folder} has no {WEIGHTS}.")
    digest = sha256_file(weights)
    if digest != card["sha256"]:
        raise ModelError(f"The weights in {folder} are corrupt or were changed (checksum mismatch); "
                         "re-install or re-train the model.")
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise ModelError(f"Could not read the weights in {folder}: {exc}") from exc
    return card, state


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path | str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"The weights in {folder} do not match the architecture in its card: "
                         f"{str(exc).splitlines()[0]}") from exc


def record_in_card(folder: Path | str, key: str, value: Any) -> dict[str, Any]:
    """Store ``value`` under ``key`` in a model's card (e.g. its measured evaluation), leaving the weights alone."""
    return _write_card(folder, dict(read_card(folder), **{key: value}))


def _write_card(folder: Path | str, card: dict[str, Any]) -> dict[str, Any]:
    (Path(folder) / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


def save_model(folder: Path | str, module: torch.nn.Module, card: dict[str, Any],
               half: bool = False) -> dict[str, Any]:
    """Write weights and card (with the checksum filled in); returns the card.

    ``half`` stores floating-point tensors as float16 (half the size; load_state_dict casts back on load).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / WEIGHTS))
    return _write_card(folder, dict(card, sha256=sha256_file(folder / WEIGHTS)))
