"""Texture generator backbone: MONAI DiffusionModelUNet (3D, cross-attention) + a radiomics token encoder.

The paper's released code feeds each feature to cross-attention as a nameless width-1 token, so attention only sees
a permutation-invariant set of scalars. Here token_i = phi(r_i) + e_i: a shared value MLP plus a learned
*feature-identity* embedding, so the model knows which value belongs to which feature. A learned null context
(one token per feature) serves both the removal path and classifier-free guidance.
"""

from __future__ import annotations

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

DEFAULT_UNET = {
    "channels": [32, 64, 64],
    "attention_levels": [False, True, True],
    "num_res_blocks": 1,
    "num_head_channels": 16,
    "norm_num_groups": 8,
    "context_dim": 32,
}


class FeatureTokens(nn.Module):
    """(B, F) normalized features → (B, F, D) tokens; rows with ``use_null`` get the learned null context."""

    def __init__(self, num_features: int, dim: int) -> None:
        super().__init__()
        self.value = nn.Sequential(nn.Linear(1, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.identity = nn.Parameter(torch.randn(num_features, dim) * 0.02)
        self.null = nn.Parameter(torch.randn(num_features, dim) * 0.02)

    def forward(self, features: torch.Tensor, use_null: torch.Tensor) -> torch.Tensor:
        tokens = self.value(features.unsqueeze(-1)) + self.identity
        null = self.null.expand_as(tokens)
        return torch.where(use_null.view(-1, 1, 1), null, tokens)


class TextureUNet(nn.Module):
    """Predicts the bridge "grad" from cat[x_t, y, mask] with cross-attention to feature tokens."""

    def __init__(self, latent_channels: int, num_features: int, arch: dict) -> None:
        super().__init__()
        dim = arch["context_dim"]
        self.tokens = FeatureTokens(num_features, dim)
        self.unet = DiffusionModelUNet(
            spatial_dims=3, in_channels=2 * latent_channels + 1, out_channels=latent_channels,
            channels=tuple(arch["channels"]), attention_levels=tuple(arch["attention_levels"]),
            num_res_blocks=arch["num_res_blocks"], num_head_channels=arch["num_head_channels"],
            norm_num_groups=arch["norm_num_groups"], with_conditioning=True, cross_attention_dim=dim,
        )

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
                features: torch.Tensor, use_null: torch.Tensor) -> torch.Tensor:
        context = self.tokens(features, use_null)
        return self.unet(torch.cat([x_t, y, mask], dim=1), timesteps=t, context=context)
