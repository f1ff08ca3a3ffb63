"""MAISI networks from a network config, weights from user-supplied files, and the model-registry builders.

The networks are MONAI's own (``monai.apps.generation.maisi.networks``: ``AutoencoderKlMaisi``,
``DiffusionModelUNetMaisi``, ``ControlNetMaisi``) built from the ``*_def`` entries of a MAISI network config
(see :mod:`radsynth.nets.maisi_config`). A RadSynth MAISI model is one folder holding all of a
generator's networks in one ``weights.safetensors`` (keys prefixed ``autoencoder.``, ``diffusion.``,
``controlnet.``) and a ``card.json`` with the config, the latent scale factor, the scheduler, the grid the model
supports and the intensity mapping.

:func:`convert` makes such a folder from the published checkpoints (``autoencoder_v1.pt``,
``diff_unet_3d_rflow-ct.pt``, ``controlnet_3d_rflow-ct.pt``). Those are PyTorch pickles: they are read with
``torch.load(weights_only=True)``, whose unpickler accepts tensors, numbers and containers and refuses anything
that would run code. Every key and shape is checked against the networks the config builds before anything is
written, and the folder appears only when complete.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from .. import models
from ..errors import ModelError
from . import maisi_config as mc

KINDS = {"rflow": "maisi-rflow-ct", "ddpm": "maisi-ddpm-ct"}
#: what a published checkpoint dict keeps its state dict under (NV-Generate-CTMR scripts/utils_infer.py)
STATE_KEYS = ("unet_state_dict", "controlnet_state_dict", "state_dict", "model_state_dict", "model")
DEFAULT_STEPS = {"rflow": 30, "ddpm": 1000}


def _classes() -> dict[str, type]:
    from monai.apps.generation.maisi.networks.autoencoderkl_maisi import AutoencoderKlMaisi
    from monai.apps.generation.maisi.networks.controlnet_maisi import ControlNetMaisi
    from monai.apps.generation.maisi.networks.diffusion_model_unet_maisi import DiffusionModelUNetMaisi

    return {"autoencoder": AutoencoderKlMaisi, "diffusion": DiffusionModelUNetMaisi, "controlnet": ControlNetMaisi}


def runtime_args(part: str, device: torch.device | str) -> dict[str, Any]:
    """Constructor arguments set for inference on ``device``; none of them changes the weights.

    MONAI refuses flash attention without CUDA, float16 group-norm outputs are slow and lossy on CPU, and
    activation checkpointing only saves memory when gradients are kept.
    """
    cuda = torch.device(device).type == "cuda"
    args: dict[str, Any] = {"use_checkpointing": False}
    if part in ("diffusion", "controlnet") and not cuda:
        args["use_flash_attention"] = False
    if part == "autoencoder":
        args["print_info"] = False
        if not cuda:
            args["norm_float16"] = False
    return args


def build_network(part: str, definition: Mapping[str, Any], device: torch.device | str = "cpu",
                  **overrides: Any) -> torch.nn.Module:
    """The ``part`` network ("autoencoder", "diffusion", "controlnet") a config definition describes."""
    cls = _classes()[part]
    args = {**mc.network_args(definition), **runtime_args(part, device), **overrides}
    if part == "diffusion":
        args.pop("use_checkpointing", None)   # DiffusionModelUNetMaisi has no such argument
    try:
        return cls(**args)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"The {part} definition of the network config does not build a {cls.__name__} "
                         f"({exc}).") from exc


# ------------------------------------------------------------------------------------------------ weight files

def read_checkpoint(path: Path | str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, other tensors and numbers in the file, e.g. ``scale_factor``) without running code.

    ``.safetensors`` files hold tensors only; other files are read with ``torch.load(weights_only=True)``.
    A checkpoint dict may keep the state dict under one of :data:`STATE_KEYS`; DataParallel's ``module.``
    prefix is removed.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Weight file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return _strip_module(load_file(str(path))), {}
        except Exception as exc:   # safetensors raises several types for truncated or foreign files
            raise ModelError(f"Could not read the safetensors file {path}: {exc}") from exc
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Unsupported global" in str(exc):     # the restricted unpickler met a class or function reference
            raise ModelError(f"{path} holds Python objects other than tensors and numbers, so radsynth will not "
                             "open it (loading it would run code from the file). Save the networks' state_dict "
                             "alone, or give the file published with the model.") from exc
        raise ModelError(f"Could not read the weight file {path} (corrupt or not a PyTorch checkpoint).") from exc
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as exc:
        raise ModelError(f"Could not read the weight file {path} (corrupt or not a PyTorch checkpoint: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}).") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} holds a {type(data).__name__}, not a state dict or checkpoint dict.")
    if data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return _strip_module(data), {}
    for key in STATE_KEYS:
        inner = data.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            extras = {k: v for k, v in data.items() if k != key and isinstance(v, (torch.Tensor, int, float))}
            return _strip_module(inner), extras
    raise ModelError(f"{path} is a checkpoint dict without a state dict of tensors (looked for the whole dict and "
                     f"for {', '.join(STATE_KEYS)}; found {', '.join(sorted(map(str, data))[:8])}).")


def _strip_module(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def _listing(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_state(module: torch.nn.Module, state: Mapping[str, torch.Tensor], part: str, source: Any) -> None:
    """Refuse ``state`` unless it has exactly ``module``'s keys with the same shapes (a clear ModelError)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f"{k} {tuple(state[k].shape)} (the config builds {tuple(expected[k].shape)})"
             for k in sorted(set(expected) & set(state)) if tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_listing(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_listing(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} with another shape ({_listing(wrong, 3)})")
    if problems:
        raise ModelError(f"The {part} weights in {source} do not fit the {part} network the config describes: "
                         + "; ".join(problems) + ". Use the network config published with these weights.")


def load_part(part: str, definition: Mapping[str, Any], state: Mapping[str, torch.Tensor], source: Any,
              device: torch.device | str = "cpu") -> torch.nn.Module:
    module = build_network(part, definition, device)
    check_state(module, state, part, source)
    module.load_state_dict(state, strict=True)
    return module.to(device).eval()


# -------------------------------------------------------------------------------------------- loaded generator

@dataclasses.dataclass
class MaisiNetworks:
    """A loaded MAISI-family generator: what the registry's builder returns for a "maisi-*-ct" card."""
    autoencoder: torch.nn.Module
    diffusion: torch.nn.Module
    controlnet: Optional[torch.nn.Module]
    card: dict
    device: torch.device

    @property
    def cards(self) -> tuple[dict, ...]:
        return (self.card,)

    @property
    def versions(self) -> dict[str, str]:
        return {self.card["name"]: str(self.card["version"])}

    @property
    def is_demo(self) -> bool:
        return bool(self.card.get("demo"))

    @property
    def scale_factor(self) -> float:
        return float(self.card["latent"]["scale_factor"])

    def parameter_bytes(self) -> int:
        nets = [n for n in (self.autoencoder, self.diffusion, self.controlnet) if n is not None]
        return sum(p.numel() * p.element_size() for n in nets for p in n.parameters())


def split_state(state: Mapping[str, torch.Tensor], networks: list[str], source: Any) -> dict[str, dict]:
    parts: dict[str, dict] = {name: {} for name in networks}
    for key, value in state.items():
        prefix, _, rest = key.partition(".")
        if prefix not in parts:
            raise ModelError(f"The weights in {source} hold {key!r}, which belongs to none of the networks the card "
                             f"lists ({', '.join(networks)}).")
        parts[prefix][rest] = value
    return parts


def build_generator(folder: Path, card: dict, state: dict, device: torch.device) -> MaisiNetworks:
    """Registry builder for "maisi-rflow-ct" / "maisi-ddpm-ct": every network, strictly loaded, on ``device``."""
    networks = list(card["networks"])
    if "autoencoder" not in networks or "diffusion" not in networks:
        raise ModelError(f"The card in {folder} lists {networks}; a generator needs an autoencoder and a diffusion "
                         "network.")
    arch = card["architecture"]
    parts = split_state(state, networks, folder)
    built = {name: load_part(name, arch[mc.PARTS[name][0]], parts[name], folder, device) for name in networks}
    return MaisiNetworks(built["autoencoder"], built["diffusion"], built.get("controlnet"), card, device)



# --------------------------------------------------------------------------------------------------- converting

def _scale_factor(value: Any, source: Any) -> float:
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ModelError(f"The scale_factor in {source} has {value.numel()} values; one is expected.")
        value = value.item()
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise ModelError(f"The scale_factor in {source} is not a number ({value!r}).") from None
    if not (factor > 0 and factor < float("inf")):
        raise ModelError(f"The scale_factor in {source} must be a positive number (got {factor}).")
    return factor


def convert(config: Path | str | Mapping[str, Any], autoencoder: Path | str, diffusion: Path | str,
            out: Path | str, *, name: str, version: str = "1", controlnet: Path | str | None = None,
            scale_factor: Optional[float] = None, title: str = "", licence: str = "",
            grid: Optional[Mapping[str, Any]] = None, intensity: Optional[Mapping[str, Any]] = None,
            modality: int = 1, default_steps: Optional[int] = None, decode_tile: Optional[list[int]] = None,
            decode_overlap: float = 0.4, demo: bool = False, extra: Optional[Mapping[str, Any]] = None,
            label_dict: Path | str | Mapping[str, int] | None = None, required_labels: tuple[str, ...] = ()) -> dict:
    """Write ``out`` (a new folder: weights.safetensors + card.json with sha256) from a MAISI network config and the
    networks' weight files; returns the card. ``radsynth models add OUT`` then installs it.

    ``scale_factor`` defaults to the one stored in the diffusion checkpoint (MAISI keeps it there). ``grid`` and
    ``intensity`` default to NV-Generate-CT's CT limits. A ControlNet checkpoint that lacks weights the diffusion
    UNet has under the same names gets them from the UNet, as NV-Generate-CTMR's loader does
    (``copy_model_state``); the card counts how many. ``label_dict`` (the published label_dict.json, organ name ->
    label value, or the dict) goes into the card so that ``generate volume`` can map a segmentation's segment names
    onto the ControlNet's labels; ``required_labels`` are those a segmentation must provide. Nothing is written
    unless every check passes.
    """
    out = Path(out)
    if out.exists():
        raise ModelError(f"{out} already exists; give a new folder for the converted model.")
    arch = mc.parse_network_config(config)
    sched = mc.scheduler_spec(arch["noise_scheduler"])
    files = {"autoencoder": Path(autoencoder), "diffusion": Path(diffusion)}
    if controlnet is not None:
        if "controlnet_def" not in arch:
            raise ModelError("A ControlNet weight file was given but the network config has no controlnet_def.")
        files["controlnet"] = Path(controlnet)
    states: dict[str, dict] = {}
    extras: dict[str, dict] = {}
    for part, path in files.items():
        states[part], extras[part] = read_checkpoint(path)
    if scale_factor is None:
        if "scale_factor" not in extras["diffusion"]:
            raise ModelError(f"{files['diffusion']} holds no scale_factor; give the latent scale factor the "
                             "diffusion model was trained with (1/std of the training latents).")
        scale_factor = extras["diffusion"]["scale_factor"]
    factor = _scale_factor(scale_factor, files["diffusion"])
    filled = 0
    counts: dict[str, int] = {}
    for part, state in states.items():
        module = build_network(part, arch[mc.PARTS[part][0]], "cpu")
        if part == "controlnet":
            expected = module.state_dict()
            unet = states["diffusion"]
            for key in set(expected) - set(state):
                if key in unet and tuple(unet[key].shape) == tuple(expected[key].shape):
                    state[key] = unet[key].clone()   # safetensors refuses tensors that share memory
                    filled += 1
        check_state(module, state, part, files[part])
        counts[part] = int(sum(p.numel() for p in module.parameters()))
        del module
    unet_def = arch["diffusion_unet_def"]
    steps = int(default_steps or DEFAULT_STEPS[sched["type"]])
    card: dict[str, Any] = {
        "name": name, "kind": KINDS[sched["type"]], "version": str(version),
        "title": title or f"MAISI latent {sched['type']} CT generator",
        "description": "Whole-volume CT latent diffusion (MAISI network family), converted by radsynth.",
        "licence": licence or "unknown (see the source of the weights)", "demo": bool(demo),
        "architecture": {k: v for k, v in arch.items() if k != "noise_scheduler"},
        "networks": list(files),
        "parameters": counts,
        "latent": {"scale_factor": factor, "channels": int(arch["latent_channels"]),
                   "downsample": mc.downsample_factor(arch)},
        "scheduler": sched,
        "sampling": {"sampler": "rflow" if sched["type"] == "rflow" else "ddpm", "default_steps": steps,
                     "decode_tile": decode_tile, "decode_overlap": float(decode_overlap),
                     "decode_mode": "gaussian", "autocast": "float16"},
        "intensity": dict(intensity or mc.MAISI_CT_INTENSITY),
        "conditioning": {"spacing": bool(unet_def.get("include_spacing_input")),
                         "body_region": bool(unet_def.get("include_top_region_index_input")),
                         "class_label": int(modality) if unet_def.get("num_class_embeds") else None,
                         "mask": "controlnet" in files},
        "grid": dict(grid or mc.MAISI_CT_GRID),
        "source": {part: {"file": p.name, "sha256": models.sha256_file(p)} for part, p in files.items()},
        "converted": {"by": "radsynth.nets.maisi.convert", "date": datetime.date.today().isoformat(),
                      "controlnet_weights_from_unet": filled},
    }
    if not isinstance(config, Mapping):
        card["source"]["config"] = {"file": Path(config).name, "sha256": models.sha256_file(Path(config))}
    if label_dict is not None:
        table = label_dict if isinstance(label_dict, Mapping) else _read_label_dict(Path(label_dict))
        if "controlnet" not in files:
            raise ModelError("A label_dict was given but no ControlNet: only a ControlNet follows organ labels.")
        card["label_dict"] = {str(k): int(v) for k, v in table.items()}
        missing = [r for r in required_labels if r not in card["label_dict"]]
        if missing:
            raise ModelError(f"The required label(s) {', '.join(missing)} are not in the label_dict.")
        card["conditioning"]["required_labels"] = list(required_labels)
        if isinstance(label_dict, (str, Path)):
            card["source"]["label_dict"] = {"file": Path(label_dict).name,
                                            "sha256": models.sha256_file(Path(label_dict))}
    card.update(dict(extra or {}))
    _write_folder(out, {f"{part}.{k}": v for part, state in states.items() for k, v in state.items()}, card)
    return models.read_card(out)


def _read_label_dict(path: Path) -> dict[str, int]:
    import json

    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"Could not read the label_dict {path} ({exc}).") from None
    if not isinstance(table, dict) or not all(isinstance(v, int) and 0 <= v < 256 for v in table.values()):
        raise ModelError(f"The label_dict {path} must map organ names to label values 0-255.")
    return table


def _write_folder(out: Path, state: dict[str, torch.Tensor], card: dict) -> None:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(staging / models.WEIGHTS))
        models.write_card(staging, dict(card, sha256=models.sha256_file(staging / models.WEIGHTS)))
        os.rename(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_checkpoints(folder: Path | str, networks: Mapping[str, torch.nn.Module], scale_factor: float) -> dict:
    """Write networks as the published NV-Generate-CT files are laid out (tests and benchmarks use this):
    ``autoencoder.pt`` a bare state dict, ``diffusion.pt`` ``{"unet_state_dict", "scale_factor"}``,
    ``controlnet.pt`` ``{"controlnet_state_dict"}``. Returns {part: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for part, net in networks.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        payload: Any = {"autoencoder": lambda s: s,
                        "diffusion": lambda s: {"unet_state_dict": s, "scale_factor": torch.tensor(scale_factor),
                                                "epoch": 0},
                        "controlnet": lambda s: {"controlnet_state_dict": s, "epoch": 0}}[part](state)
        paths[part] = folder / f"{part}.pt"
        torch.save(payload, paths[part])
    return paths
