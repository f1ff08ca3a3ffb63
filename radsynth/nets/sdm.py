"""Semantic diffusion model (SDM, seed 001): CT slices rendered from label maps with MONAI's
``SPADEDiffusionModelUNet``.

The map enters only through spatially-adaptive normalization in the decoder (MONAI puts SPADE in the up-blocks);
the encoder sees the noisy slice (and, with ``neighbour``, the already generated adjacent slice). Maps are one-hot
over the card's ``classes`` plus one extra *null* channel: the null map is that channel alone, all ones. Training
replaces each sample's map with the null map with probability ``map_dropout`` (seed 001's SDM code fine-tunes
with 0.2; the thesis itself never did), so one network learns the conditional and the unconditional prediction and
classifier-free guidance (:func:`radsynth.samplers.guidance.classifier_free`) mixes them.

Why a null channel rather than SDM's all-zero map: SPADE's first convolution of an all-zero map is its bias alone,
so the null response would share every weight with the real maps; a channel of its own gives it its own weights,
and a null map can never be mistaken for a (one-hot, summing to one) real map.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch
from monai.networks.nets import SPADEDiffusionModelUNet
from torch import nn

from ..samplers.ddim import make_scheduler
from ..samplers.guidance import NullableModel

KIND = "sdm"
DEFAULT_ARCH: dict[str, Any] = {
    "channels": [32, 64, 64],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 16,
    "norm_num_groups": 8,
    "spade_intermediate_channels": 32,
    "neighbour": True,
}
#: seed 001's six classes (radsynth.pipelines.inpaint.labels.BASIC)
DEFAULT_CLASSES = (0, 1, 2, 3, 4, 5)
MAP_DROPOUT = 0.2


class SDMUNet(nn.Module):
    """ε(x_t, t | map[, neighbour]) for x (B, 1, H, W) and a one-hot map (B, classes + 1, H, W)."""

    def __init__(self, arch: Optional[dict[str, Any]] = None, classes: Sequence[int] = DEFAULT_CLASSES) -> None:
        super().__init__()
        arch = {**DEFAULT_ARCH, **(arch or {})}
        self.arch = arch
        self.classes = tuple(int(c) for c in classes)
        self.neighbour = bool(arch["neighbour"])
        self.unet = SPADEDiffusionModelUNet(
            spatial_dims=2, in_channels=2 if self.neighbour else 1, out_channels=1, label_nc=len(self.classes) + 1,
            channels=tuple(arch["channels"]), attention_levels=tuple(arch["attention_levels"]),
            num_res_blocks=arch["num_res_blocks"], num_head_channels=arch["num_head_channels"],
            norm_num_groups=arch["norm_num_groups"],
            spade_intermediate_channels=arch["spade_intermediate_channels"])
        self.levels = len(arch["channels"])

    @property
    def map_channels(self) -> int:
        return len(self.classes) + 1

    def forward(self, x: torch.Tensor, t: torch.Tensor, seg: torch.Tensor,
                neighbour: Optional[torch.Tensor] = None) -> torch.Tensor:
        if seg.shape[1] != self.map_channels:
            raise ValueError(f"the map has {seg.shape[1]} channels; this model takes {self.map_channels} "
                             f"({len(self.classes)} classes + null)")
        if self.neighbour:
            if neighbour is None:
                raise ValueError("this SDM is conditioned on the neighbouring slice; pass it")
            x = torch.cat([x, neighbour], dim=1)
        elif neighbour is not None:
            raise ValueError("this SDM has no neighbour-slice input")
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        return self.unet(x, timesteps=t, seg=seg)

    def one_hot(self, label_map: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, H, W) or (H, W) integer map → (B, classes + 1, H, W) float one-hot; unknown values are refused,
        named (radsynth.pipelines.inpaint.labels.UnknownLabelError)."""
        from ..pipelines.inpaint.labels import validate

        lm = torch.as_tensor(np.asarray(label_map) if not isinstance(label_map, torch.Tensor) else label_map)
        validate(lm.cpu().numpy(), self.classes)
        if lm.dim() == 2:
            lm = lm[None]
        lut = torch.full((int(max(self.classes)) + 1,), -1, dtype=torch.long)
        lut[list(self.classes)] = torch.arange(len(self.classes))
        idx = lut[lm.long()]
        out = torch.zeros((lm.shape[0], self.map_channels, *lm.shape[1:]), dtype=torch.float32)
        out.scatter_(1, idx[:, None], 1.0)
        return out

    def null_map(self, like: torch.Tensor) -> torch.Tensor:
        """The null map shaped like a one-hot map ``like``: the null channel only."""
        out = torch.zeros_like(like)
        out[:, -1] = 1.0
        return out


def with_null(net: SDMUNet, seg: torch.Tensor, null: torch.Tensor) -> torch.Tensor:
    """``seg`` with the samples flagged in ``null`` (B,) bool replaced by the null map."""
    return torch.where(null.view(-1, 1, 1, 1).to(seg.device), net.null_map(seg), seg)


def drop_maps(net: SDMUNet, seg: torch.Tensor, rate: float, generator: Optional[torch.Generator] = None
              ) -> torch.Tensor:
    """Map dropout for training: each sample's map becomes the null map with probability ``rate``."""
    null = torch.rand(seg.shape[0], generator=generator) < rate
    return with_null(net, seg, null)


def _batch(tensor: torch.Tensor, b: int) -> torch.Tensor:
    """``tensor`` (1 or n samples) for a batch of b: guidance runs the n samples twice (conditional, null)."""
    n = tensor.shape[0]
    if n == b:
        return tensor
    if b % n:
        raise ValueError(f"a batch of {b} cannot use {n} maps")
    return tensor.repeat(b // n, *([1] * (tensor.dim() - 1)))


def nullable(net: SDMUNet, seg: torch.Tensor, neighbour: Optional[torch.Tensor] = None) -> NullableModel:
    """``model(x, t, null)`` for :func:`radsynth.samplers.guidance.classifier_free`: the map ``seg`` (1 or B
    samples), replaced by the null map where ``null`` is set."""

    def model(x: torch.Tensor, t: int, null: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        s = with_null(net, _batch(seg, b).to(x.device), null)
        nb = None if neighbour is None else _batch(neighbour, b).to(x.device)
        return net(x, torch.full((b,), int(t), device=x.device), s, nb)

    return model


def training_loss(net: SDMUNet, scheduler: Any, image: torch.Tensor, seg: torch.Tensor,
                  neighbour: Optional[torch.Tensor] = None, map_dropout: float = MAP_DROPOUT,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """ε-MSE (seed 001's L_simple; no learned variance: DDIM does not use it) with map dropout."""
    b = image.shape[0]
    t = torch.randint(0, scheduler.num_train_timesteps, (b,), generator=generator).to(image.device)
    noise = torch.randn(image.shape, generator=generator).to(image.device, image.dtype)
    noisy = scheduler.add_noise(image, noise, t)
    seg = drop_maps(net, seg, map_dropout, generator) if map_dropout > 0 else seg
    return ((net(noisy, t, seg, neighbour) - noise) ** 2).mean()


def build(card: dict[str, Any]) -> SDMUNet:
    return SDMUNet(card.get("architecture"), card.get("classes", DEFAULT_CLASSES))


def build_sdm(folder, card: dict, state: dict, device: torch.device) -> SDMUNet:
    """Model-registry builder for an ``sdm`` card: ``architecture``, ``classes`` (label values in channel order),
    ``schedule`` (MONAI DDPMScheduler arguments), ``region`` (window, spacing, size)."""
    from ..models import load_into

    net = build(card)
    load_into(net, state, folder)
    net.card = card
    net.scheduler = make_scheduler(card.get("schedule"))
    return net.to(device).eval()
