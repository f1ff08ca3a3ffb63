"""Score network for ASCII: a MONAI 2D DiffusionModelUNet over K stacked adjacent axial slices, conditioned on σ.

s(x, σ) = F(c_in(σ) · x, c_noise(σ)) / σ, per channel:

* output / σ as score_sde's NCSN++ (``scale_by_sigma``): F predicts −z, an O(1) target at every noise level;
* c_in = 1 / sqrt(σ² + σ_data²) (EDM's input scaling; NCSN++ has none): at σ_max = 68 the raw input is ~68 times
  larger than at low noise, which a small network trained on a CPU does not absorb;
* c_noise: MONAI's sinusoidal timestep embedding accepts float timesteps but its frequencies (max period 10 000)
  are laid out for labels 0 … 1000, so σ is fed as 999 · t(σ) = 999 log(σ/σ_min) / log(σ_max/σ_min), the VE-SDE
  time on that scale; ¼ log σ (EDM) would span only ~3 units and use just the fastest few frequencies.

Per-channel noise levels (``per_channel_noise``, for clean known channels, see radsynth.samplers.score): the
timestep embedding gets the level of the generated channels (the largest), and the K per-channel labels go through
a small MLP into MONAI's class-embedding slot, which is added to the timestep embedding. Its last layer starts at
zero, so a model with it starts out identical to one without.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

DEFAULT_ARCH: dict[str, Any] = {
    "slices": 2,
    "channels": [32, 64, 64],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 16,
    "norm_num_groups": 8,
    "sigma_data": 0.5,
    "per_channel_noise": True,
}


class ChannelLevels(nn.Module):
    """(B, K) per-channel noise labels in [0, 1] → (B, E), added to the timestep embedding."""

    def __init__(self, slices: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(slices, dim), nn.SiLU(), nn.Linear(dim, dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.mlp(labels)


class ScoreUNet(nn.Module):
    """s(x, σ) for x (B, K, H, W) in model units; σ (B,) or per channel (B, K). H and W divisible by
    2^(levels − 1)."""

    def __init__(self, arch: dict[str, Any], sigma_min: float, sigma_max: float) -> None:
        super().__init__()
        arch = {**DEFAULT_ARCH, **arch}
        self.slices = int(arch["slices"])
        if self.slices < 2:
            raise ValueError(f"an ASCII score model stacks at least 2 slices, got {self.slices}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.sigma_data = float(arch["sigma_data"])
        self.per_channel_noise = bool(arch["per_channel_noise"])
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=self.slices, out_channels=self.slices,
            channels=tuple(arch["channels"]), attention_levels=tuple(arch["attention_levels"]),
            num_res_blocks=arch["num_res_blocks"], num_head_channels=arch["num_head_channels"],
            norm_num_groups=arch["norm_num_groups"],
            num_class_embeds=1 if self.per_channel_noise else None,
        )
        if self.per_channel_noise:
            self.unet.class_embedding = ChannelLevels(self.slices, arch["channels"][0] * 4)
        self.levels = len(arch["channels"])

    def noise_label(self, sigma: torch.Tensor) -> torch.Tensor:
        """999 · t(σ): the VE-SDE time of σ on the 0 … 999 scale MONAI's embedding is laid out for."""
        return 999.0 * torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b, k = x.shape[:2]
        if k != self.slices:
            raise ValueError(f"the model stacks {self.slices} slices, got {k} channels")
        sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
        per = sigma.reshape(-1, 1).expand(b, k) if sigma.dim() <= 1 else sigma
        if per.shape != (b, k):
            raise ValueError(f"sigma must be (B,) or (B, K) = ({b}, {k}), got {tuple(sigma.shape)}")
        if not self.per_channel_noise and not torch.all(per == per[:, :1]):
            raise ValueError("this model was trained with one noise level for all slices; per-channel levels "
                             "(clean known slices) need a model with per_channel_noise")
        scale = per.view(b, k, 1, 1)
        c_in = torch.rsqrt(scale ** 2 + self.sigma_data ** 2)
        labels = self.noise_label(per.max(dim=1).values)
        extra = self.noise_label(per) / 999.0 if self.per_channel_noise else None
        return self.unet(x * c_in, timesteps=labels, class_labels=extra) / scale


def build(card: dict[str, Any]) -> ScoreUNet:
    """The network a card describes: ``architecture`` (DEFAULT_ARCH keys) and ``sde`` (sigma_min, sigma_max)."""
    from ..processes.ve_sde import VESDE

    sde = VESDE.from_card(card)
    return ScoreUNet(card.get("architecture", {}), sde.sigma_min, sde.sigma_max)


def build_slice_score(folder, card: dict, state: dict, device: torch.device) -> ScoreUNet:
    """Model-registry builder (models.register_builder) for a card of the ASCII score kind."""
    from ..models import load_into

    net = build(card)
    load_into(net, state, folder)
    net.card = card
    return net.to(device).eval()
