"""IC-Net (thesis §6.1.4): intensity calibration of a generated slice against its neighbour.

Architecture: a U-Net whose encoder uses instance normalisation and whose decoder is built from SPADE residual
blocks (MONAI ``SPADE``) modulated by the previous slice. Instance normalisation strips each feature map of its
mean and spread, so the encoder passes on the current slice's *structure* without its (possibly drifted) contrast;
the SPADE blocks put intensities back with scale and shift maps computed from the neighbour. The output is the
calibrated slice, not a residual on the input: that would hand the drifted contrast straight back.

Training is self-supervised (:func:`icnet_loss`): take adjacent real slices (x_t, x_t+1) in the card's window
(thesis: −150…150 HU → [−1, 1]), scale the contrast of x_t+1 inside the window about its mean,
x̂ = (x − x̄) μ + x̄ with μ ~ U[0.7, 1.3] (the thesis prints U[−0.7, 1.3], a typo), and regress x_t+1 from
(x̂, x_t) with L1.

Deviation: the decoder predicts a correction to the analytic calibration :func:`match_moments` (the slice's
in-window spread matched to the neighbour's) and starts at zero, so even an untrained IC-Net inverts the training
perturbation to about 1 HU on the sample CT; the network learns what global matching misses.

Back into the full-range slice (:func:`reinsert`; the thesis does not say): only pixels whose HU lies inside the
window take the calibrated value, with a linear ramp over ``margin`` HU at each window edge. A pixel at or outside
the window (air, lung, bone, anything clipped on the way in, about which IC-Net saw nothing) keeps its value bit
for bit; the ramp avoids a step where tissue crosses the window edge.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import torch
from monai.networks.blocks.spade_norm import SPADE
from torch import nn
from torch.nn import functional as F

DEFAULT_ARCH: dict[str, Any] = {"channels": [16, 32, 64], "spade_hidden": 32, "moment_base": True}
#: the thesis's IC-Net window and contrast range
THESIS_WINDOW = (-150.0, 150.0)
MU_RANGE = (0.7, 1.3)


# -- network -----------------------------------------------------------------------------------------------------
def _conv_in(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
                         nn.InstanceNorm2d(cout), nn.LeakyReLU(0.2))


class SpadeResBlock(nn.Module):
    """SPADE residual block (Park et al. 2019): SPADE → LeakyReLU → conv, twice, plus a (SPADE-normalised) skip."""

    def __init__(self, cin: int, cout: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = SPADE(1, cin, hidden_channels=hidden, spatial_dims=2, norm="INSTANCE")
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = SPADE(1, cout, hidden_channels=hidden, spatial_dims=2, norm="INSTANCE")
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip_norm = SPADE(1, cin, hidden_channels=hidden, spatial_dims=2, norm="INSTANCE") if cin != cout \
            else None
        self.skip_conv = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.norm1(x, previous), 0.2))
        h = self.conv2(F.leaky_relu(self.norm2(h, previous), 0.2))
        skip = x if self.skip_conv is None else self.skip_conv(self.skip_norm(x, previous))
        return skip + h


class ICNet(nn.Module):
    """calibrated = ICNet(current, previous), both (B, 1, H, W) in window units; H, W divisible by
    2^(levels − 1)."""

    def __init__(self, arch: Optional[dict[str, Any]] = None) -> None:
        super().__init__()
        arch = {**DEFAULT_ARCH, **(arch or {})}
        ch = list(arch["channels"])
        hidden = int(arch["spade_hidden"])
        self.stem = nn.Sequential(_conv_in(1, ch[0]), _conv_in(ch[0], ch[0]))
        self.down = nn.ModuleList(nn.Sequential(_conv_in(ch[i], ch[i + 1], stride=2), _conv_in(ch[i + 1], ch[i + 1]))
                                  for i in range(len(ch) - 1))
        self.bottom = SpadeResBlock(ch[-1], ch[-1], hidden)
        self.up = nn.ModuleList(SpadeResBlock(ch[i + 1] + ch[i], ch[i], hidden) for i in reversed(range(len(ch) - 1)))
        self.head = nn.Conv2d(ch[0], 1, 1)
        self.moment_base = bool(arch["moment_base"])
        if self.moment_base:        # the network starts as the analytic calibration and learns what it misses
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        self.levels = len(ch)

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        if current.shape != previous.shape or current.dim() != 4 or current.shape[1] != 1:
            raise ValueError(f"IC-Net takes two (B, 1, H, W) slices of one shape, got {tuple(current.shape)} and "
                             f"{tuple(previous.shape)}")
        skips = [self.stem(current)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = self.bottom(skips.pop(), previous)
        for block in self.up:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), previous)
        out = self.head(h)
        return out + match_moments(current, previous) if self.moment_base else out


def in_window(x: torch.Tensor) -> torch.Tensor:
    """Pixels strictly inside the window (window units): the region of interest. Clipped pixels (air, lung, bone)
    carry no information about contrast and are never changed."""
    return (x > -1.0) & (x < 1.0)


def _roi_stats(x: torch.Tensor, roi: torch.Tensor, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    w = roi.to(x.dtype)
    count = w.sum(dim=(-2, -1), keepdim=True).clamp_min(1.0)
    mean = (x * w).sum(dim=(-2, -1), keepdim=True) / count
    var = ((x - mean) ** 2 * w).sum(dim=(-2, -1), keepdim=True) / count
    return mean, var.clamp_min(eps ** 2).sqrt()


def match_moments(current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """The analytic calibration: inside the window, the current slice's deviations from its mean rescaled to the
    previous slice's spread, (x̂ − mean x̂) · std(prev) / std(x̂) + mean x̂ (statistics over each slice's own
    in-window pixels); pixels at or outside the window pass through unchanged.

    Exact for the training perturbation when adjacent slices have the same spread (the scaling leaves the mean and
    the normalised deviations unchanged); what remains is the anatomy-dependent change of spread between slices.
    """
    roi = in_window(current)
    mean, spread = _roi_stats(current, roi)
    _, spread_prev = _roi_stats(previous, in_window(previous))
    return torch.where(roi, (current - mean) * (spread_prev / spread) + mean, current)


# -- the self-supervised objective ------------------------------------------------------------------------------
def perturb_contrast(x: torch.Tensor, mu: torch.Tensor, roi: bool = True) -> torch.Tensor:
    """x̂ = (x − x̄) μ + x̄ per slice, ``mu`` one per sample (B,); the mean x̄ is kept exactly.

    ``roi`` (default): only pixels inside the window are scaled, about their own mean, as the thesis's "the
    intensity of x in ROI is randomly changed": a generated slice's drift moves tissue, while its air and bone stay
    clipped at the window edges. ``roi=False`` scales the whole windowed slice, clipped pixels included.
    """
    scale = mu.view(-1, *([1] * (x.dim() - 1))).to(x)
    if not roi:
        mean = x.mean(dim=(-2, -1), keepdim=True)
        return (x - mean) * scale + mean
    inside = in_window(x)
    mean, _ = _roi_stats(x, inside)
    return torch.where(inside, (x - mean) * scale + mean, x)


def invert_contrast(x_hat: torch.Tensor, mu: torch.Tensor, roi: bool = True) -> torch.Tensor:
    """The analytic inverse of :func:`perturb_contrast` when μ is known (IC-Net has to infer it).

    With ``roi`` it is exact as long as no scaled pixel left the window (μ near 1, or tissue far from the edges).
    """
    if not roi:
        return perturb_contrast(x_hat, 1.0 / mu, roi=False)
    inside = in_window(x_hat)
    mean, _ = _roi_stats(x_hat, inside)
    return torch.where(inside, (x_hat - mean) / mu.view(-1, *([1] * (x_hat.dim() - 1))).to(x_hat) + mean, x_hat)


def sample_mu(batch: int, generator: Optional[torch.Generator] = None,
              mu_range: tuple[float, float] = MU_RANGE) -> torch.Tensor:
    lo, hi = mu_range
    return lo + (hi - lo) * torch.rand(batch, generator=generator)


def icnet_loss(net: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], current: torch.Tensor,
               previous: torch.Tensor, generator: Optional[torch.Generator] = None,
               mu: Optional[torch.Tensor] = None, mu_range: tuple[float, float] = MU_RANGE,
               roi: bool = True) -> torch.Tensor:
    """L_IC = E |IC-Net(x̂_μ, x_prev) − x| with x̂_μ the contrast-scaled current slice (window units), clipped to
    the window as every slice IC-Net sees at inference is."""
    if mu is None:
        mu = sample_mu(current.shape[0], generator, mu_range)
    x_hat = perturb_contrast(current, mu, roi).clamp(-1.0, 1.0)
    return (net(x_hat, previous) - current).abs().mean()


# -- window and re-insertion ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Window:
    """An HU window mapped linearly onto [−1, 1] (clipped on the way in)."""
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"a window needs lo < hi, got ({self.lo}, {self.hi})")

    def to_unit(self, hu: torch.Tensor) -> torch.Tensor:
        return (hu.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 2.0 - 1.0

    def to_hu(self, unit: torch.Tensor) -> torch.Tensor:
        """No clipping: a calibrated value may leave the window."""
        return (unit + 1.0) / 2.0 * (self.hi - self.lo) + self.lo


def blend_weight(hu: torch.Tensor, window: Window, margin: float) -> torch.Tensor:
    """1 inside the window further than ``margin`` HU from its edges, falling linearly to 0 at the edges and
    0 at or outside them."""
    if margin <= 0:
        return ((hu > window.lo) & (hu < window.hi)).to(hu.dtype)
    inside = torch.minimum(hu - window.lo, window.hi - hu)
    return (inside / margin).clamp(0.0, 1.0)


def reinsert(original_hu: torch.Tensor, calibrated_hu: torch.Tensor, window: Window, margin: float) -> torch.Tensor:
    """original + w(original) · (calibrated − original): the original bit for bit where w = 0 (at or outside the
    window), the calibrated value bit for bit where w = 1."""
    w = blend_weight(original_hu, window, margin)
    blended = original_hu + w * (calibrated_hu - original_hu)
    return torch.where(w >= 1, calibrated_hu, torch.where(w > 0, blended, original_hu))


def default_margin(window: Window) -> float:
    """10 % of the window width (30 HU for the thesis's −150…150)."""
    return 0.1 * (window.hi - window.lo)


@torch.no_grad()
def calibrate_hu(net: ICNet, current_hu: torch.Tensor, previous_hu: torch.Tensor, window: Window,
                 margin: Optional[float] = None) -> torch.Tensor:
    """Full-range slices (B, H, W) in HU → the current slice calibrated against the previous one, in HU."""
    margin = default_margin(window) if margin is None else margin
    out = net(window.to_unit(current_hu).unsqueeze(1), window.to_unit(previous_hu).unsqueeze(1)).squeeze(1)
    return reinsert(current_hu, window.to_hu(out), window, margin)


def calibrator(net: ICNet, model_window: Window, window: Window = Window(*THESIS_WINDOW),
               margin: Optional[float] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """An ASCII calibrator: slices in the score model's units (``model_window``, e.g. −1024…3071 HU) in and out.

    Pixels the score model put outside its own range are clipped by the HU round trip, as its output would be.
    """
    def calibrate(new: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        hu = calibrate_hu(net, model_window.to_hu(new.clamp(-1, 1)), model_window.to_hu(previous.clamp(-1, 1)),
                          window, margin)
        return model_window.to_unit(hu)
    return calibrate


# -- model cards -------------------------------------------------------------------------------------------------
def window_from_card(card: dict[str, Any]) -> Window:
    lo, hi = card.get("window", THESIS_WINDOW)
    return Window(float(lo), float(hi))


def build_icnet(folder, card: dict, state: dict, device: torch.device) -> ICNet:
    """Model-registry builder (models.register_builder) for an IC-Net card (``architecture``, ``window``)."""
    from ..models import load_into

    net = ICNet(card.get("architecture"))
    load_into(net, state, folder)
    net.card = card
    return net.to(device).eval()
