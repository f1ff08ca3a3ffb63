"""Builders for the texture generator's model pair (VQ-GAN + BBDM) and ``load_models``, which loads both.

The builders are registered in ``radsynth.models`` under the card kinds "vqgan" and "bbdm-texture"; the registry
does the checks every model shares (card, kind, checksum, required fields) and turns card errors into ModelError.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from .. import models
from ..conditioning import Gaussian, gaussian_from_card
from ..errors import ModelError
from ..models import bundled, load_into
from ..nets.texture_unet import TextureUNet
from ..nets.vqgan import LatentCodec, build_vqvae
from ..processes.bridge import BrownianBridge
from ..radiomics import FeatureNormalizer
from ..region import RegionSpec

DEMO_VQGAN = "demo-tumor-vqgan"
DEMO_TEXTURE = "demo-tumor-bbdm"


@dataclasses.dataclass
class Codec:
    """A loaded VQ-GAN: the latent codec and its card (the "vqgan" builder's result)."""
    codec: LatentCodec
    card: dict


def build_codec(folder: Path, card: dict, state: dict, device: torch.device) -> Codec:
    vqvae = build_vqvae(card["architecture"])
    load_into(vqvae, state, folder)
    latent = card["latent"]
    return Codec(LatentCodec(vqvae, latent["mean"], latent["std"]).to(device).eval(), card)


def load_codec(folder: Path | str, device: torch.device) -> tuple[LatentCodec, dict]:
    loaded = models.load("vqgan", folder, device)
    return loaded.codec, loaded.card


@dataclasses.dataclass
class TumorModels:
    codec: LatentCodec
    texture: TextureUNet
    bridge: BrownianBridge
    normalizer: FeatureNormalizer
    spec: RegionSpec
    vq_card: dict
    texture_card: dict
    device: torch.device
    #: (mean, cov) of the normalized training features, for filling unset features; None on cards without one
    gaussian: Optional[Gaussian] = None

    @property
    def cards(self) -> tuple[dict, dict]:
        """Both models' cards (the runner reports them)."""
        return (self.vq_card, self.texture_card)

    @property
    def versions(self) -> dict[str, str]:
        return {c["name"]: c["version"] for c in self.cards}

    @property
    def default_steps(self) -> int:
        """Sampler steps when a caller gives none: the card's choice (benchmarked per model)."""
        return int(self.texture_card.get("sampling", {}).get("default_steps", 20))

    @property
    def is_demo(self) -> bool:
        return bool(self.vq_card.get("demo") or self.texture_card.get("demo"))


def texture_folder(texture_dir: Path | str | None = None) -> Path:
    """The texture model's folder: the one given, else the bundled demo model."""
    return Path(texture_dir) if texture_dir else bundled(DEMO_TEXTURE)


def vqgan_folder(texture_dir: Path, card: dict) -> Path:
    """The VQ-GAN a texture card names: the sibling folder of that name, else an installed VQ-GAN with its sha256."""
    named = card["vqgan"]
    sibling = texture_dir.parent / named.get("name", DEMO_VQGAN)
    if sibling.is_dir():
        return sibling
    for model in models.installed("vqgan"):
        if model.card["sha256"] == named.get("sha256"):
            return model.folder
    raise ModelError(f"The texture model in {texture_dir} needs the VQ-GAN {named.get('name')} "
                     f"{named.get('version', '')}, which is not installed; add it with 'radsynth models add'.")


def build_tumor_models(folder: Path, card: dict, state: dict, device: torch.device,
                       vqgan_dir: Path | str | None = None) -> TumorModels:
    """The "bbdm-texture" builder: the texture UNet plus the VQ-GAN it was trained with (checked by sha256)."""
    vqgan_dir = Path(vqgan_dir) if vqgan_dir is not None else vqgan_folder(folder, card)
    vq = models.load("vqgan", vqgan_dir, device)
    if card["vqgan"].get("sha256") != vq.card["sha256"]:
        raise ModelError(f"The texture model in {folder} was trained with a different VQ-GAN than the one in "
                         f"{vqgan_dir}; use the VQ-GAN it names ({card['vqgan'].get('name')}).")
    normalizer = FeatureNormalizer.from_dict(card["features"])
    normalizer.require_current_params()
    texture = TextureUNet(card["latent_channels"], len(normalizer.names), card["architecture"])
    bridge = BrownianBridge(**card["bridge"])
    region = vq.card["region"]
    spec = RegionSpec(tuple(region["size"]), tuple(region["spacing"]), tuple(region["window"]))
    load_into(texture, state, folder)
    gaussian = gaussian_from_card(card, len(normalizer.names)) if "gaussian" in card else None
    return TumorModels(vq.codec, texture.to(device).eval(), bridge, normalizer, spec, vq.card, card, device, gaussian)


def load_models(texture_dir: Path | str | None = None, vqgan_dir: Path | str | None = None,
                device: str | torch.device | None = "auto") -> TumorModels:
    """Load a BBDM texture model and its VQ-GAN (default: the bundled demo models).

    ``vqgan_dir`` defaults to the folder named by the texture card, next to the texture model (else an installed
    VQ-GAN with the sha256 the card names).
    """
    return models.load("bbdm-texture", texture_folder(texture_dir), device, vqgan_dir=vqgan_dir)
