"""Load the texture generator's model pair (VQ-GAN + BBDM) from their folders and check they belong together."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from ..conditioning import Gaussian, gaussian_from_card
from ..device import pick_device
from ..errors import ModelError
from ..models import bundled, load_into, load_model
from ..nets.texture_unet import TextureUNet
from ..nets.vqgan import LatentCodec, build_vqvae
from ..processes.bridge import BrownianBridge
from ..radiomics import FeatureNormalizer
from ..region import RegionSpec

DEMO_VQGAN = "demo-tumor-vqgan"
DEMO_TEXTURE = "demo-tumor-bbdm"


def load_codec(folder: Path | str, device: torch.device) -> tuple[LatentCodec, dict]:
    card, state = load_model(folder, "vqgan")
    try:
        vqvae = build_vqvae(card["architecture"])
        latent = card["latent"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"The VQ-GAN card in {folder} has an unusable architecture ({exc!r}).") from exc
    load_into(vqvae, state, folder)
    return LatentCodec(vqvae, latent["mean"], latent["std"]).to(device).eval(), card


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
    def versions(self) -> dict[str, str]:
        return {c["name"]: c["version"] for c in (self.vq_card, self.texture_card)}

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


def load_models(texture_dir: Path | str | None = None, vqgan_dir: Path | str | None = None,
                device: str | torch.device | None = "auto") -> TumorModels:
    """Load a BBDM texture model and its VQ-GAN (default: the bundled demo models).

    ``vqgan_dir`` defaults to the folder named by the texture card, next to the texture model.
    """
    device = device if isinstance(device, torch.device) else pick_device(device)
    texture_dir = texture_folder(texture_dir)
    card, state = load_model(texture_dir, "bbdm-texture")
    if vqgan_dir is None:
        vqgan_dir = texture_dir.parent / card.get("vqgan", {}).get("name", DEMO_VQGAN)
    codec, vq_card = load_codec(vqgan_dir, device)
    if card.get("vqgan", {}).get("sha256") != vq_card["sha256"]:
        raise ModelError(f"The texture model in {texture_dir} was trained with a different VQ-GAN than the one in "
                         f"{vqgan_dir}; use the VQ-GAN it names ({card.get('vqgan', {}).get('name')}).")
    try:
        normalizer = FeatureNormalizer.from_dict(card["features"])
        normalizer.require_current_params()
        texture = TextureUNet(card["latent_channels"], len(normalizer.names), card["architecture"])
        bridge = BrownianBridge(**card["bridge"])
        region = vq_card["region"]
        spec = RegionSpec(tuple(region["size"]), tuple(region["spacing"]), tuple(region["window"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"The model card in {texture_dir} is incomplete or inconsistent ({exc!r}).") from exc
    load_into(texture, state, texture_dir)
    gaussian = gaussian_from_card(card, len(normalizer.names)) if "gaussian" in card else None
    return TumorModels(codec, texture.to(device).eval(), bridge, normalizer, spec, vq_card, card, device, gaussian)
