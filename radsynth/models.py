"""Model registry: a model is a folder holding ``weights.safetensors`` and ``card.json``; a builder per card kind.

The card carries everything needed to use the weights correctly (architecture, region spec, feature list and
normalization, latent statistics, training data, version, licence) plus the sha256 of the weights file. Loading
never unpickles: safetensors holds tensors only.

``load(kind, folder, device)`` is the one way to turn a folder into a ready network object: it checks the card, the
kind, the checksum and the card fields the kind needs, then hands (folder, card, state, device) to the builder
registered for the kind. Builders are registered by "module:function" name and imported on first use, so importing
this module (to list or verify cards) does not import torch, MONAI or any network code.

Where models live: the bundled demo models (``radsynth/weights``), and a user model directory
(``$RADSYNTH_MODELS``, else ``$XDG_DATA_HOME/radsynth/models``, else ``~/.local/share/radsynth/models``) that
``radsynth models add`` copies into. The catalogue (``radsynth/data/model_catalog.json``) says which models exist
and where a user with internet can get the ones not shipped; nothing here downloads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

from .checksums import sha256_file
from .errors import ModelError

if TYPE_CHECKING:  # torch stays out of the import path of listing and card reading
    import torch

WEIGHTS = "weights.safetensors"
CARD = "card.json"
BUNDLED = Path(__file__).parent / "weights"
CATALOG = Path(__file__).parent / "data" / "model_catalog.json"
USER_MODELS_ENV = "RADSYNTH_MODELS"
REQUIRED_FIELDS = ("name", "kind", "version", "architecture", "sha256")
#: names and versions become folder names in the user model directory
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")

Builder = Callable[[Path, dict, dict, "torch.device"], Any]


@dataclasses.dataclass(frozen=True)
class _Registration:
    target: Union[str, Builder]          # "module:function", resolved on first load, or the callable itself
    requires: tuple[str, ...] = ()       # card fields the builder reads, checked before it runs


_MAISI = ("networks", "latent", "scheduler", "grid", "intensity", "conditioning")
#: The built-in kinds, each named "module:function" so that nothing is imported before its first load; plugins call
#: register_builder for theirs. Kinds without a bundled model (MAISI: the user's checkpoints) need a folder.
_BUILDERS: dict[str, _Registration] = {
    "vqgan": _Registration("radsynth.pipelines.loading:build_codec", ("region", "latent")),
    "bbdm-texture": _Registration("radsynth.pipelines.loading:build_tumor_models",
                                  ("vqgan", "features", "latent_channels", "bridge")),
    "shape-gan": _Registration("radsynth.pipelines.shape:build_shape_model", ("features", "grid", "gaussian")),
    "slice-score": _Registration("radsynth.nets.score_unet:build_slice_score",
                                 ("architecture", "sde", "window", "grid")),
    "organ-score": _Registration("radsynth.nets.score_unet:build_slice_score",
                                 ("architecture", "sde", "window", "grid", "classes")),
    "icnet": _Registration("radsynth.nets.icnet:build_icnet", ("architecture", "window")),
    "diffusion-inpaint": _Registration("radsynth.nets.inpaint_unet:build_inpaint_unet", ("architecture", "region")),
    "sdm": _Registration("radsynth.nets.sdm:build_sdm", ("architecture", "classes", "region")),
    "maisi-rflow-ct": _Registration("radsynth.nets.maisi:build_generator", _MAISI),
    "maisi-ddpm-ct": _Registration("radsynth.nets.maisi:build_generator", _MAISI),
    # radsynth.train.volume's models: MAISI networks with the model's own mask channels instead of a ControlNet
    "volume-ldm": _Registration("radsynth.nets.maisi:build_generator", _MAISI),
}


def register_builder(kind: str, builder: Union[str, Builder], requires: tuple[str, ...] = ()) -> None:
    """Declare how a card of ``kind`` becomes a network object.

    ``builder(folder, card, state, device)`` gets a checked card and its tensors and returns the ready object;
    it builds the network from ``card["architecture"]`` and calls :func:`load_into` (strict). ``builder`` may be a
    "package.module:function" string, imported on the first load of that kind. Re-registering a kind replaces it.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError("a model kind is a non-empty string")
    if isinstance(builder, str) and ":" not in builder:
        raise ValueError(f"builder {builder!r} must be 'module:function' or a callable")
    _BUILDERS[kind] = _Registration(builder, tuple(requires))


def known_kinds() -> list[str]:
    return sorted(_BUILDERS)


def builder_for(kind: str) -> Builder:
    """The builder registered for ``kind`` (importing it now if it was registered by name)."""
    reg = _BUILDERS.get(kind)
    if reg is None:
        raise ModelError(f"No loader for model kind {kind!r} in this radsynth; known kinds: "
                         f"{', '.join(known_kinds())}.")
    if callable(reg.target):
        return reg.target
    module, _, name = reg.target.partition(":")
    return getattr(importlib.import_module(module), name)


# ---------------------------------------------------------------------------------------------------- files, cards

def bundled(name: str) -> Path:
    return BUNDLED / name


def user_models_dir() -> Path:
    """Where ``radsynth models add`` puts models (not created until something is added)."""
    if os.environ.get(USER_MODELS_ENV):
        return Path(os.environ[USER_MODELS_ENV]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(data) / "radsynth" / "models"


def read_card(folder: Path | str, required: tuple[str, ...] = REQUIRED_FIELDS) -> dict[str, Any]:
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
    if not isinstance(card, dict):
        raise ModelError(f"The model card {card_path} is corrupt (not a JSON object).")
    for key in required:
        if key not in card:
            raise ModelError(f"The model card {card_path} lacks the required field {key!r}.")
    return card


def check_weights(folder: Path | str, card: dict[str, Any]) -> Path:
    """The weights file of ``folder`` after checking it exists and matches the card's sha256."""
    folder = Path(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise ModelError(f"Model folder {folder} has no {WEIGHTS}.")
    if sha256_file(weights) != card["sha256"]:
        raise ModelError(f"The weights in {folder} are corrupt or were changed (checksum mismatch); "
                         "re-install or re-train the model.")
    return weights


def load_model(folder: Path | str, kind: str) -> tuple[dict[str, Any], dict[str, "torch.Tensor"]]:
    """Return (card, state_dict) after checking the kind and the weights' checksum."""
    from safetensors.torch import load_file

    folder = Path(folder)
    card = read_card(folder)
    if card["kind"] != kind:
        raise ModelError(f"{folder} holds a {card['kind']!r} model, but a {kind!r} model is needed here.")
    weights = check_weights(folder, card)
    try:
        state = load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for truncated/corrupt files
        raise ModelError(f"Could not read the weights in {folder}: {exc}") from exc
    return card, state


def load_into(module: "torch.nn.Module", state: dict[str, "torch.Tensor"], folder: Path | str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"The weights in {folder} do not match the architecture in its card: "
                         f"{str(exc).splitlines()[0]}") from exc


def record_in_card(folder: Path | str, key: str, value: Any) -> dict[str, Any]:
    """Store ``value`` under ``key`` in a model's card (e.g. its measured evaluation), leaving the weights alone."""
    return write_card(folder, dict(read_card(folder), **{key: value}))


def write_card(folder: Path | str, card: dict[str, Any]) -> dict[str, Any]:
    (Path(folder) / CARD).write_text(json.dumps(card, indent=2) + "\n")
    return card


_write_card = write_card  # older name, kept for callers outside this module


def save_model(folder: Path | str, module: "torch.nn.Module", card: dict[str, Any],
               half: bool = False) -> dict[str, Any]:
    """Write weights and card (with the checksum filled in); returns the card.

    ``half`` stores floating-point tensors as float16 (half the size; load_state_dict casts back on load).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(folder / WEIGHTS))
    return write_card(folder, dict(card, sha256=sha256_file(folder / WEIGHTS)))


# ------------------------------------------------------------------------------------------ installed + catalogue

@dataclasses.dataclass(frozen=True)
class Installed:
    """A model folder found on this machine."""
    folder: Path
    card: dict
    source: str  # "bundled" or "user"

    @property
    def name(self) -> str:
        return self.card["name"]

    @property
    def version(self) -> str:
        return str(self.card["version"])


def installed(kind: str | None = None) -> list[Installed]:
    """Models on this machine (bundled first, then the user directory); folders with unreadable cards are skipped
    here and reported by ``radsynth models verify``."""
    out = []
    for source, folder in model_folders():
        try:
            card = read_card(folder)
        except ModelError:
            continue
        if kind is None or card["kind"] == kind:
            out.append(Installed(folder, card, source))
    return out


def model_folders() -> Iterator[tuple[str, Path]]:
    """(source, folder) for every folder with a card in the bundled and user model directories, readable or not."""
    for source, root in (("bundled", BUNDLED), ("user", user_models_dir())):
        for folder in _model_folders(root):
            yield source, folder


def _model_folders(root: Path) -> Iterator[Path]:
    # dot-folders are `radsynth models add` staging areas, not models yet
    if root.is_dir():
        yield from sorted(p for p in root.iterdir()
                          if p.is_dir() and not p.name.startswith(".") and (p / CARD).is_file())


def listing() -> list[dict[str, Any]]:
    """One row per installed model, then one per catalogued model that is not installed (``radsynth models list``)."""
    rows = []
    for m in installed():
        timing = m.card.get("timing") or {}
        weights = m.folder / WEIGHTS
        rows.append({
            "name": m.name, "kind": m.card["kind"], "version": m.version,
            "licence": m.card.get("licence"), "demo": bool(m.card.get("demo")), "installed": m.source,
            "size_bytes": weights.stat().st_size if weights.is_file() else None, "sha256": m.card["sha256"],
            "cpu_s": timing.get("cpu_s"), "gpu_s": timing.get("gpu_s"),
            "timing_note": timing.get("gpu_reason") if timing else "not measured",
            "loader": m.card["kind"] in _BUILDERS, "folder": str(m.folder),
        })
    names = {r["name"] for r in rows}
    for entry in catalog():
        if entry["name"] not in names:
            rows.append({
                "name": entry["name"], "kind": entry["kind"], "version": entry.get("version"),
                "licence": entry.get("licence"), "demo": bool(entry.get("demo")), "installed": None,
                "size_bytes": None, "sha256": None, "cpu_s": None, "gpu_s": None, "timing_note": "not installed",
                "loader": entry["kind"] in _BUILDERS, "source": entry.get("source"),
            })
    return rows


def catalog() -> list[dict[str, Any]]:
    """The catalogue's entries: models that exist, bundled or to be obtained by the user."""
    try:
        data = json.loads(CATALOG.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"The model catalogue {CATALOG} is unreadable ({exc}); reinstall radsynth.") from exc
    return list(data["models"])


def find(name: str, version: str | None = None) -> Installed:
    """The installed model called ``name`` (newest version in the user directory wins over bundled if several)."""
    hits = [m for m in installed() if m.name == name and (version is None or m.version == str(version))]
    if hits:
        return hits[-1]
    raise ModelError(missing_message(name, version))


def missing_message(name: str, version: str | None = None) -> str:
    wanted = f"{name} {version}" if version else name
    entry = next((e for e in catalog() if e["name"] == name), None)
    if entry is None:
        return (f"The model {wanted} is not installed and is not in radsynth's model catalogue ({CATALOG.name}); "
                f"add a model folder with 'radsynth models add FOLDER'.")
    return (f"The model {wanted} ({entry.get('title', entry['kind'])}) is not installed. Get it from "
            f"{entry.get('source', 'the catalogue')} (licence: {entry.get('licence', 'unknown')}). "
            f"{entry.get('get', '')} Then add it with 'radsynth models add FOLDER'. "
            f"(From radsynth's model catalogue, {CATALOG.name}.)")


def default_folder(kind: str) -> Path:
    """The folder ``load(kind)`` uses when none is given: the catalogue's default model of that kind."""
    entries = [e for e in catalog() if e["kind"] == kind]
    if not entries:
        raise ModelError(f"No default model of kind {kind!r}: give a model folder. Kinds with a default: "
                         f"{', '.join(sorted({e['kind'] for e in catalog() if e.get('default')}))}.")
    entry = next((e for e in entries if e.get("default")), entries[0])
    return find(entry["name"]).folder


# ------------------------------------------------------------------------------------------------------- loading

def load(kind: str, folder: Path | str | None = None, device: Union[str, "torch.device", None] = "auto",
         **options: Any) -> Any:
    """Load the model of ``kind`` in ``folder`` (None: the catalogue's default of that kind) onto ``device``.

    Checks, in order: a builder exists for the kind, the card is readable and names this kind, the weights match the
    card's sha256, the card has the fields the kind needs; then the builder builds the network and loads the weights
    strictly. Every failure is a ModelError naming the folder. ``options`` go to the builder (e.g. ``vqgan_dir`` for
    "bbdm-texture"); callers that cache by (kind, folder, device) should not pass any.
    """
    import torch

    from .device import pick_device

    if kind not in _BUILDERS and not any(e["kind"] == kind for e in catalog()):
        builder_for(kind)  # raises, listing the known kinds
    # a catalogued model that is not installed is named with its source before "no loader" can be said
    folder = Path(folder) if folder is not None else default_folder(kind)
    builder = builder_for(kind)
    device = device if isinstance(device, torch.device) else pick_device(device)
    card, state = load_model(folder, kind)
    for key in _BUILDERS[kind].requires:
        if key not in card:
            raise ModelError(f"The model card {folder / CARD} lacks the field {key!r} that a {kind!r} model needs.")
    try:
        return builder(folder, card, state, device, **options)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"The {kind} model card in {folder} is incomplete or inconsistent ({exc!r}).") from exc


# --------------------------------------------------------------------------------------------------------- adding

def add(source: Path | str, trust: bool = False, device: Union[str, "torch.device", None] = "cpu") -> Installed:
    """Copy a model folder (one a user trained or downloaded) into the user model directory, after checking it.

    The card must name a kind this radsynth can build; name + version must be new; the weights must match the
    card's sha256. A card without sha256 is refused unless ``trust`` is given: then the sha256 of the weights as
    they are now is recorded in the copied card (the user vouches for the file; the source folder is not changed).
    The copy is built and its weights loaded strictly before it appears under its final name, so a failed add
    leaves nothing behind.
    """
    source = Path(source)
    card = read_card(source, required=tuple(k for k in REQUIRED_FIELDS if k != "sha256"))
    name, version = str(card["name"]), str(card["version"])
    for label, value in (("name", name), ("version", version)):
        if not _SAFE.match(value):
            raise ModelError(f"The model card in {source} has an unusable {label} {value!r}: use letters, digits, "
                             "'.', '_', '+' or '-'.")
    builder_for(card["kind"])  # a kind this radsynth cannot build cannot be verified, so it is not added
    for m in installed():
        if m.name == name and m.version == version:
            raise ModelError(f"The model {name} {version} is already installed ({m.source}, {m.folder}); "
                             "give the new one another version in its card.")
    if not (source / WEIGHTS).is_file():
        raise ModelError(f"Model folder {source} has no {WEIGHTS}.")
    if "sha256" not in card and not trust:
        raise ModelError(f"The model card in {source} has no sha256, so nothing shows that {WEIGHTS} holds the "
                         "weights the card describes. If you trained or converted these weights yourself, add it "
                         "with --trust to record their sha256 now.")
    root = user_models_dir()
    final = root / f"{name}-{version}"
    if final.exists():
        raise ModelError(f"{final} already exists but holds no readable model {name} {version}; move it away.")
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".adding-{name}-", dir=root))
    try:
        shutil.copyfile(source / WEIGHTS, staging / WEIGHTS)
        if "sha256" not in card:  # --trust: the checksum of the copy, i.e. of the file that will be used
            card = dict(card, sha256=sha256_file(staging / WEIGHTS), sha256_recorded={
                "by": "radsynth models add --trust", "date": datetime.date.today().isoformat(),
                "from": str(source.resolve())})
        write_card(staging, card)
        load(card["kind"], staging, device)   # checksum, card fields, architecture, strict weights
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_root:
            with contextlib.suppress(OSError):
                root.rmdir()
        raise
    return Installed(final, card, "user")
