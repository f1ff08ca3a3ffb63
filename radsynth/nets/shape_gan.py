"""Shape generator (TumorSynth part 2): a small 3D conditional GAN with attention, plus its discriminator and the
feature regressor used as an auxiliary "obey the condition" loss.

Conditioning differs from the paper's released code in two ways that matter for control:
  * features enter as identity-aware tokens (``FeatureTokens``: token_i = MLP(r_i) + e_i) for cross-attention, and
    the raw normalized vector also enters the initial projection, so the generator sees every value, not only its
    sign;
  * the discriminator is a projection discriminator scored on each real mask's *own* features, with a
    matching-aware term that pairs real masks with another sample's features as negatives.

Sizes are chosen for the CPU slider path: one 32³ sample costs a few hundred MFLOP, so a preview stays well under
100 ms on one core.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .texture_unet import FeatureTokens

DEFAULT_SHAPE_GAN = {
    "grid": 32,
    "z_dim": 64,
    "token_dim": 64,
    "channels": [96, 48, 24, 8],   # at 4³, 8³, 16³, 32³
    "heads": 4,
    "groups": 8,
    "prior_radius": 8.0,            # voxels; see ShapeGenerator.prior
    "d_channels": [16, 32, 64, 128],
}


def _gn(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, channels), channels)


class CrossAttention(nn.Module):
    """Residual attention from a feature map (queries) to the feature tokens (keys/values)."""

    def __init__(self, channels: int, token_dim: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = _gn(channels, groups)
        self.attn = nn.MultiheadAttention(channels, heads, kdim=token_dim, vdim=token_dim, batch_first=True)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        q = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(q, tokens, tokens, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class SelfAttention(nn.Module):
    """Global self-attention over all voxels of a coarse map: relates opposite sides of the shape (diameters)."""

    def __init__(self, channels: int, heads: int, groups: int) -> None:
        super().__init__()
        self.norm = _gn(channels, groups)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(h, h, h, need_weights=False)
        return x + out.transpose(1, 2).reshape(x.shape)


class UpBlock(nn.Module):
    """Channel reduction before upsampling (cheaper than convolving the wide map at the fine size), then conv."""

    def __init__(self, cin: int, cout: int, groups: int, convs: int) -> None:
        super().__init__()
        self.reduce = nn.Conv3d(cin, cout, 1)
        layers: list[nn.Module] = []
        for _ in range(convs):
            layers += [nn.Conv3d(cout, cout, 3, padding=1), _gn(cout, groups), nn.SiLU()]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2, mode="trilinear", align_corners=False)
        return x + self.body(x)


class ShapeGenerator(nn.Module):
    """(z, normalized scale-invariant features) → (B, 1, G, G, G) logits of a mask in the normalized frame."""

    def __init__(self, num_features: int, arch: dict) -> None:
        super().__init__()
        c4, c8, c16, c32 = arch["channels"]
        g, heads, td = arch["groups"], arch["heads"], arch["token_dim"]
        self.z_dim = arch["z_dim"]
        self.c4 = c4
        self.tokens = FeatureTokens(num_features, td)
        # a narrow projection widened by a conv keeps the weights small (the linear layer dominated the file size)
        self.project = nn.Sequential(nn.Linear(self.z_dim + num_features, 256), nn.SiLU(), nn.Linear(256, 64 * 32))
        self.widen = nn.Conv3d(32, c4, 3, padding=1)
        self.block4 = nn.Sequential(nn.Conv3d(c4, c4, 3, padding=1), _gn(c4, g), nn.SiLU())
        self.up8 = UpBlock(c4, c8, g, convs=2)
        self.self8 = SelfAttention(c8, heads, g)
        self.cross8 = CrossAttention(c8, td, heads, g)
        self.up16 = UpBlock(c8, c16, g, convs=1)
        self.cross16 = CrossAttention(c16, td, max(1, heads // 2), g)
        self.up32 = UpBlock(c16, c32, g, convs=1)
        self.out = nn.Conv3d(c32, 1, 3, padding=1)
        # Fixed logit offset: a ball of the frame's typical size. The net learns a residual from a plausible
        # tumour instead of starting from "all voxels at p = 0.5", which cost most of a short CPU training run.
        n, r0 = arch["grid"], arch["prior_radius"]
        u = torch.arange(n, dtype=torch.float32) - (n - 1) / 2
        r = torch.sqrt(u.view(-1, 1, 1) ** 2 + u.view(1, -1, 1) ** 2 + u.view(1, 1, -1) ** 2)
        self.register_buffer("prior", 2.0 * (1 - r / r0), persistent=False)

    def forward(self, z: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        tokens = self.tokens(features, torch.zeros(len(features), dtype=torch.bool, device=features.device))
        x = self.widen(self.project(torch.cat([z, features], dim=1)).view(-1, 32, 4, 4, 4))
        x = x + self.block4(x)
        x = self.cross8(self.self8(self.up8(x)), tokens)
        x = self.cross16(self.up16(x), tokens)
        return self.out(self.up32(x)) + self.prior


class ShapeDiscriminator(nn.Module):
    """Spectral-norm 3D conv net, 32³ → 4³, with projection conditioning: score = w·h + <embed(c), h>."""

    def __init__(self, num_features: int, arch: dict) -> None:
        super().__init__()
        chans = arch["d_channels"]
        layers: list[nn.Module] = []
        cin = 1
        for i, c in enumerate(chans):
            stride = 2 if i < 3 else 1
            layers += [spectral_norm(nn.Conv3d(cin, c, 3, stride=stride, padding=1)), nn.LeakyReLU(0.2)]
            cin = c
        self.body = nn.Sequential(*layers)
        self.head = spectral_norm(nn.Linear(cin, 1))
        self.embed = spectral_norm(nn.Linear(num_features, cin))

    def forward(self, soft_mask: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        h = self.body(soft_mask * 2 - 1).sum(dim=(2, 3, 4))
        return self.head(h).squeeze(1) + (self.embed(features) * h).sum(1)


class FeatureRegressor(nn.Module):
    """Soft mask → normalized features; differentiable stand-in for pyradiomics in the generator's loss."""

    def __init__(self, num_features: int, width: int = 8) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.Conv3d(1, w, 3, padding=1), nn.SiLU(),
            nn.Conv3d(w, 2 * w, 3, stride=2, padding=1), _gn(2 * w, 8), nn.SiLU(),        # 16³
            nn.Conv3d(2 * w, 4 * w, 3, stride=2, padding=1), _gn(4 * w, 8), nn.SiLU(),    # 8³
            nn.Conv3d(4 * w, 8 * w, 3, stride=2, padding=1), _gn(8 * w, 8), nn.SiLU(),    # 4³
        )
        self.head = nn.Sequential(nn.Linear(8 * w * 64, 128), nn.SiLU(), nn.Linear(128, num_features))

    def forward(self, soft_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(soft_mask * 2 - 1).flatten(1))


def soft_area_volume(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface area as the coarea integral of |∇p| (exact for a smooth rim) and volume as Σp, per soft mask."""
    p = p[:, 0]
    gk = (p[:, 2:, 1:-1, 1:-1] - p[:, :-2, 1:-1, 1:-1]) / 2
    gj = (p[:, 1:-1, 2:, 1:-1] - p[:, 1:-1, :-2, 1:-1]) / 2
    gi = (p[:, 1:-1, 1:-1, 2:] - p[:, 1:-1, 1:-1, :-2]) / 2
    return torch.sqrt(gk ** 2 + gj ** 2 + gi ** 2 + 1e-8).flatten(1).sum(1), p.flatten(1).sum(1).clamp_min(1.0)


def soft_shape_features(p: torch.Tensor, area_scale: float = 1.0, volume_scale: float = 1.0) -> torch.Tensor:
    """Differentiable pyradiomics-like descriptors of soft masks (B, 1, G, G, G) at unit spacing, columns as
    ``ANALYTIC_FEATURES``. The principal-axis features are pyradiomics' definitions on p-weighted voxels;
    ``area_scale`` and ``volume_scale`` map the soft area and volume onto the marching-cubes mesh (fitted on
    training masks). On training masks each column correlates > 0.99 with the measured feature."""
    area, mass = soft_area_volume(p)
    n = p.shape[-1]
    u = torch.arange(n, dtype=p.dtype, device=p.device)
    grid = torch.stack(torch.meshgrid(u, u, u, indexing="ij"), -1).reshape(-1, 3)
    w = p.flatten(1)
    mean = w @ grid / mass[:, None]
    d = grid[None] - mean[:, None]
    cov = torch.einsum("bn,bni,bnj->bij", w, d, d) / mass[:, None, None]
    # eigvalsh's backward needs no eigenvalue gaps, so near-spheres give finite gradients
    least, minor, major = torch.linalg.eigvalsh(cov).clamp_min(1e-6).unbind(-1)
    area = area_scale * area
    vol = volume_scale * mass
    cube = vol ** (1 / 3)
    return torch.stack([
        (36 * torch.pi) ** (1 / 3) * vol ** (2 / 3) / area,
        torch.sqrt(minor / major), torch.sqrt(least / major),
        4 * torch.sqrt(major) / cube, 4 * torch.sqrt(minor) / cube, 4 * torch.sqrt(least) / cube,
        area / vol ** (2 / 3),
    ], dim=1)


ANALYTIC_FEATURES = ("shape_Sphericity", "shape_Elongation", "shape_Flatness", "shape_MajorAxisLength/V^(1/3)",
                     "shape_MinorAxisLength/V^(1/3)", "shape_LeastAxisLength/V^(1/3)", "shape_SurfaceArea/V^(2/3)")
