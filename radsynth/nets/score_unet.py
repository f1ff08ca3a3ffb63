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

Organ guidance (``condition_channels`` > 0, the organ-score kind): the one-hot organ maps of the K stacked slices
are extra input channels, concatenated after the K noisy slices and not scaled by c_in (they carry no noise). An
all-zero condition means "no map": the model is trained with map dropout (radsynth.train.organs), so zeros run
it unguided. :func:`extend_input` grows a trained slice model's first convolution by zero weights for the new
channels, so an organ model can start from a slice model and starts out identical to it.
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
    "condition_channels": 0,
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
        self.condition_channels = int(arch["condition_channels"])
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=self.slices + self.condition_channels, out_channels=self.slices,
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

    def forward(self, x: torch.Tensor, sigma: torch.Tensor,
                condition: torch.Tensor | None = None) -> torch.Tensor:
        """``condition``: (B, condition_channels, H, W) for an organ model (None or zeros: unguided)."""
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
        inputs = x * c_in
        if self.condition_channels:
            if condition is None:
                condition = x.new_zeros(b, self.condition_channels, *x.shape[2:])
            if condition.shape[1] != self.condition_channels:
                raise ValueError(f"the model takes {self.condition_channels} condition channels, got "
                                 f"{condition.shape[1]}")
            inputs = torch.cat([inputs, condition.to(x.dtype).expand(b, -1, -1, -1)], 1)
        elif condition is not None:
            raise ValueError("this score model takes no organ map")
        return self.unet(inputs, timesteps=labels, class_labels=extra) / scale


def extend_input(net: ScoreUNet, state: dict[str, torch.Tensor]) -> None:
    """Load a slice model's ``state`` into ``net`` (same architecture but for ``condition_channels``): the first
    convolution's weights for the new condition channels are zero, so ``net`` starts out as the slice model."""
    own = net.state_dict()
    for name, value in state.items():
        value = value.to(own[name].dtype)
        if own[name].shape != value.shape and name.endswith("conv_in.conv.weight"):
            grown = torch.zeros_like(own[name])
            grown[:, :value.shape[1]] = value
            value = grown
        own[name] = value
    net.load_state_dict(own)


def organ_condition(label_windows: torch.Tensor, lut: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(B, K, H, W) label values → (B, K·C, H, W) one-hot, slice-major (slice 0's C channels first); ``lut`` maps
    a value to its class index (−1: not a class, all zeros)."""
    index = lut[label_windows.long()]
    hot = torch.nn.functional.one_hot(index.clamp_min(0), n_classes).float() * (index >= 0).unsqueeze(-1).float()
    b, k, h, w, c = hot.shape
    return hot.permute(0, 1, 4, 2, 3).reshape(b, k * c, h, w)


def class_lut(classes) -> torch.Tensor:
    """Label value → class index for :func:`organ_condition` (−1 for values that are not classes)."""
    lut = torch.full((256,), -1, dtype=torch.long)
    lut[torch.as_tensor(list(classes), dtype=torch.long)] = torch.arange(len(classes))
    return lut


def build(card: dict[str, Any]) -> ScoreUNet:
    """The network a card describes: ``architecture`` (DEFAULT_ARCH keys) and ``sde`` (sigma_min, sigma_max)."""
    from ..processes.ve_sde import VESDE

    sde = VESDE.from_card(card)
    return ScoreUNet(card.get("architecture", {}), sde.sigma_min, sde.sigma_max)


def build_slice_score(folder, card: dict, state: dict, device: torch.device) -> ScoreUNet:
    """Model-registry builder (models.register_builder) for a card of the ASCII score kind (slice-score, and
    organ-score, whose ``architecture`` has condition_channels = K × len(classes))."""
    from ..models import load_into

    net = build(card)
    load_into(net, state, folder)
    net.card = card
    return net.to(device).eval()
