"""Shared by the MAISI loading and latent generation tests."""

import torch


def wake(nets: dict) -> None:
    """MONAI zero-initialises the UNet's output convolution and the ControlNet's residual convolutions, so random
    networks would predict exactly zero; give those weights small random values so outputs depend on inputs."""
    with torch.no_grad():
        for net in nets.values():
            for param in net.parameters():
                if param.dim() > 1 and not param.any():
                    param.normal_(0.0, 0.05)
