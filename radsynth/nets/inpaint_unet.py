"""Mask-conditioned inpainting network (Palette-style, seed 002): a MONAI 2D ``DiffusionModelUNet`` whose input
channels are [x_t, masked image, mask] and, for slice-wise filling, the already generated neighbour slice.

Choices, against seed 002 (Palette as the thesis used it):

* one channel in HU-window units, not 8-bit RGB PNGs; the card's window maps HU to [-1, 1] and back exactly;
* the known pixels of x_t are the clean image (Palette's own training and sampling), so the network only ever has to
  denoise inside the mask, and the loss is taken there only;
* integer MONAI timesteps with a MONAI ``DDPMScheduler`` (the card's ``schedule``), sampled with DDIM in 20–50 steps
  instead of ancestral sampling over 1000;
* the neighbour channel (optional in the card, ``neighbour``): the adjacent axial slice, real while training and the
  previously generated one while filling, so consecutive slices agree in coronal and sagittal reformats.

``mask_input`` false gives the same network without the masked-image and mask channels: an unconditional slice
model (neighbour channel aside) for RePaint (:mod:`radsynth.samplers.repaint`), trained on whole slices.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from monai.networks.nets import DiffusionModelUNet
from torch import nn

from ..samplers.ddim import Denoiser, make_scheduler

KIND = "diffusion-inpaint"
DEFAULT_ARCH: dict[str, Any] = {
    "channels": [32, 64, 64],
    "attention_levels": [False, False, True],
    "num_res_blocks": 1,
    "num_head_channels": 16,
    "norm_num_groups": 8,
    "neighbour": True,
    "mask_input": True,
}
#: value of the masked image inside the mask (model units): mid-window, no hint of what was there
MASK_FILL = 0.0


class InpaintUNet(nn.Module):
    """ε(x_t, t | masked image, mask[, neighbour]) for (B, 1, H, W) tensors; H, W divisible by 2^(levels − 1)."""

    def __init__(self, arch: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        arch = {**DEFAULT_ARCH, **(arch or {})}
        self.arch = arch
        self.neighbour = bool(arch["neighbour"])
        self.mask_input = bool(arch["mask_input"])
        self.unet = DiffusionModelUNet(
            spatial_dims=2, in_channels=1 + 2 * self.mask_input + self.neighbour, out_channels=1,
            channels=tuple(arch["channels"]), attention_levels=tuple(arch["attention_levels"]),
            num_res_blocks=arch["num_res_blocks"], num_head_channels=arch["num_head_channels"],
            norm_num_groups=arch["norm_num_groups"])
        self.levels = len(arch["channels"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, masked: Optional[torch.Tensor] = None,
                mask: Optional[torch.Tensor] = None, neighbour: Optional[torch.Tensor] = None) -> torch.Tensor:
        parts = [x]
        if self.mask_input:
            if masked is None or mask is None:
                raise ValueError("this inpainting model is conditioned on the masked image and the mask; pass them")
            parts += [masked, mask]
        if self.neighbour:
            if neighbour is None:
                raise ValueError("this inpainting model is conditioned on the neighbouring slice; pass it")
            parts.append(neighbour)
        elif neighbour is not None:
            raise ValueError("this inpainting model has no neighbour-slice input")
        t = torch.as_tensor(t, device=x.device).reshape(-1).expand(x.shape[0])
        return self.unet(torch.cat(parts, dim=1), timesteps=t)


def masked_input(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The image with the region to fill blanked (the network's second channel)."""
    return torch.where(mask > 0.5, torch.full_like(image, MASK_FILL), image)


def denoiser(net: InpaintUNet, known: torch.Tensor, mask: torch.Tensor,
             neighbour: Optional[torch.Tensor] = None) -> Denoiser:
    """``denoise(x, t)`` for the plain samplers: the known pixels of x are reset to the clean image before the
    network sees them, as in training. For a model without mask input use :func:`unconditional_denoiser`."""
    if not net.mask_input:
        raise ValueError("this model has no mask input: inpaint with RePaint (unconditional_denoiser)")
    masked = masked_input(known, mask)
    inside = mask > 0.5

    def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
        b = x.shape[0]
        x_in = torch.where(inside.expand_as(x), x, known.expand_as(x))
        nb = None if neighbour is None else neighbour.expand(b, -1, -1, -1)
        return net(x_in, torch.full((b,), int(t), device=x.device), masked.expand(b, -1, -1, -1),
                   mask.expand(b, -1, -1, -1).to(x.dtype), nb)

    return denoise


def unconditional_denoiser(net: InpaintUNet, neighbour: Optional[torch.Tensor] = None) -> Denoiser:
    """``denoise(x, t)`` of a model without mask input (RePaint's unconditional model)."""
    if net.mask_input:
        raise ValueError("this model is mask-conditioned: use denoiser(net, known, mask)")

    def denoise(x: torch.Tensor, t: int) -> torch.Tensor:
        nb = None if neighbour is None else neighbour.expand(x.shape[0], -1, -1, -1)
        return net(x, torch.full((x.shape[0],), int(t), device=x.device), neighbour=nb)

    return denoise


def training_loss(net: InpaintUNet, scheduler: Any, image: torch.Tensor, mask: torch.Tensor,
                  neighbour: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None
                  ) -> torch.Tensor:
    """ε-MSE inside the mask for a batch of clean slices ``image`` (B, 1, H, W) and masks (1 = to fill); for a model
    without mask input, over the whole slice (``mask`` is then ignored and may be None)."""
    b = image.shape[0]
    t = torch.randint(0, scheduler.num_train_timesteps, (b,), generator=generator).to(image.device)
    noise = torch.randn(image.shape, generator=generator).to(image.device, image.dtype)
    noisy = scheduler.add_noise(image, noise, t)
    if not net.mask_input:
        pred = net(noisy, t, neighbour=neighbour)
        return ((pred - noise) ** 2).mean()
    inside = mask > 0.5
    x_t = torch.where(inside, noisy, image)
    pred = net(x_t, t, masked_input(image, mask), mask.to(image.dtype), neighbour)
    err = (pred - noise) ** 2 * inside
    return err.sum() / inside.sum().clamp(min=1)


def build(card: dict[str, Any]) -> InpaintUNet:
    return InpaintUNet(card.get("architecture"))


def build_inpaint_unet(folder, card: dict, state: dict, device: torch.device) -> InpaintUNet:
    """Model-registry builder (``models.register_builder``) for a ``diffusion-inpaint`` card: ``architecture``
    (DEFAULT_ARCH keys), ``schedule`` (MONAI DDPMScheduler arguments), ``region`` (window, spacing, size)."""
    from ..models import load_into

    net = build(card)
    load_into(net, state, folder)
    net.card = card
    net.scheduler = make_scheduler(card.get("schedule"))
    return net.to(device).eval()
