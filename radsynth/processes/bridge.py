"""Brownian-bridge diffusion (BBDM, Li et al. 2023) as used by the texture generator.

x_t = (1 - m_t) x0 + m_t y + sqrt(delta_t) eps, m_t rising linearly, delta_t = 2 s (m_t - m_t^2).
x0 is the target (tumour / healthy latent), y the source (masked latent). The network predicts the
"grad" m_t (y - x0) + sqrt(delta_t) eps, so x0 = x_t - prediction.
"""

from __future__ import annotations

import torch


class BrownianBridge:
    def __init__(self, num_steps: int = 1000, m_min: float = 0.001, m_max: float = 0.999,
                 max_var: float = 1.0) -> None:
        self.num_steps = num_steps
        self.m = torch.linspace(m_min, m_max, num_steps, dtype=torch.float64)
        self.delta = 2.0 * max_var * (self.m - self.m ** 2)

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        v = values.to(like.device)[t.to(like.device)].to(like.dtype)
        return v.view(-1, *([1] * (like.dim() - 1)))

    def q_sample(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        m, d = self._at(self.m, t, x0), self._at(self.delta, t, x0)
        return (1 - m) * x0 + m * y + d.sqrt() * noise

    def target(self, x0: torch.Tensor, y: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        m, d = self._at(self.m, t, x0), self._at(self.delta, t, x0)
        return m * (y - x0) + d.sqrt() * noise

    @staticmethod
    def predict_x0(x_t: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        return x_t - prediction

    def sample_timesteps(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randint(0, self.num_steps, (batch,), generator=generator)

    def step_list(self, steps: int) -> list[int]:
        """Descending timesteps from T-1 to 0 with ``steps`` entries, evenly spaced (any 2 <= steps <= T)."""
        if not 2 <= steps <= self.num_steps:
            raise ValueError(f"steps must be in [2, {self.num_steps}], got {steps}")
        grid = torch.linspace(self.num_steps - 1, 0, steps, dtype=torch.float64).round().long()
        return [int(v) for v in torch.unique_consecutive(grid)]
