"""Texture generator backbone: MONAI DiffusionModelUNet (3D, cross-attention) + a radiomics token encoder.

The paper's released code feeds each feature to cross-attention as a nameless width-1 token, so attention only sees
a permutation-invariant set of scalars. Here token_i = phi(r_i) + e_i: a shared value MLP plus a learned
*feature-identity* embedding, so the model knows which value belongs to which feature. A learned null context
(one token per feature) serves both the removal path and classifier-free guidance.

Cross-attention only runs at the coarser levels, where the hole is a few voxels wide. With ``global_conditioning``
the whole feature vector is also embedded and added to the timestep embedding, so every residual block at every
resolution is modulated by the request: without it the demo model learned to ignore its condition (0.0002 HU of
output per HU requested).
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
    "global_conditioning": True,
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


class GlobalFeatures(nn.Module):
    """(B, F + 1) = [features, use_null] → (B, E), added to the timestep embedding.

    MONAI's UNet adds ``class_embedding(class_labels)`` to its timestep embedding; this module takes that slot, so
    the packed vector arrives as ``class_labels``. The last layer starts at zero: a model initialised from one
    without this path begins by behaving exactly like it.
    """

    def __init__(self, num_features: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(num_features, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.null = nn.Parameter(torch.zeros(dim))

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        features, use_null = packed[:, :-1], packed[:, -1:] > 0.5
        return torch.where(use_null, self.null.expand(len(packed), -1), self.mlp(features))


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
            num_class_embeds=1 if arch.get("global_conditioning") else None,
        )
        self.global_conditioning = bool(arch.get("global_conditioning"))
        if self.global_conditioning:
            self.unet.class_embedding = GlobalFeatures(num_features, arch["channels"][0] * 4)

    def forward(self, x_t: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, t: torch.Tensor,
                features: torch.Tensor, use_null: torch.Tensor) -> torch.Tensor:
        context = self.tokens(features, use_null)
        packed = torch.cat([features, use_null.to(features.dtype)[:, None]], 1) if self.global_conditioning else None
        return self.unet(torch.cat([x_t, y, mask], dim=1), timesteps=t, context=context, class_labels=packed)
