"""3D VQ-GAN: MONAI VQVAE autoencoder plus a PatchGAN discriminator.

Diffusion runs on the *pre-quantization* encoder output (as in the paper's code); quantization happens at decode.
"""

from __future__ import annotations

import torch
from monai.networks.nets import VQVAE, PatchDiscriminator

DEFAULT_VQVAE = {
    "channels": [32, 64],
    "num_res_layers": 1,
    "num_res_channels": [32, 64],
    "num_embeddings": 512,
    "embedding_dim": 4,
}


def build_vqvae(arch: dict) -> VQVAE:
    levels = len(arch["channels"])
    return VQVAE(
        spatial_dims=3, in_channels=1, out_channels=1,
        channels=tuple(arch["channels"]),
        num_res_layers=arch["num_res_layers"],
        num_res_channels=tuple(arch["num_res_channels"]),
        downsample_parameters=((2, 4, 1, 1),) * levels,
        upsample_parameters=((2, 4, 1, 1, 0),) * levels,
        num_embeddings=arch["num_embeddings"],
        embedding_dim=arch["embedding_dim"],
    )


def build_discriminator(channels: int = 32, layers: int = 3) -> PatchDiscriminator:
    return PatchDiscriminator(spatial_dims=3, channels=channels, in_channels=1, num_layers_d=layers,
                              norm="INSTANCE")


def downsample_factor(arch: dict) -> int:
    return 2 ** len(arch["channels"])


class LatentCodec(torch.nn.Module):
    """Encoder/decoder pair with per-channel latent standardization (stats stored in the card)."""

    def __init__(self, vqvae: VQVAE, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.vqvae = vqvae
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1, 1), persistent=False)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (self.vqvae.encode(x) - self.mean) / self.std

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.vqvae.decode_stage_2_outputs(z * self.std + self.mean)
