"""Device choice: CUDA when present, else CPU; overridable by the user ("auto", "cpu", "cuda", "cuda:1")."""

from __future__ import annotations

import contextlib

import torch

from .errors import RadSynthError


def pick_device(preference: str | None = "auto") -> torch.device:
    pref = (preference or "auto").lower()
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref.startswith("cuda") and not torch.cuda.is_available():
        raise RadSynthError("CUDA was requested but no CUDA GPU is available; use --device cpu or auto.")
    device = torch.device(pref)
    if device.type == "cpu":
        # Denormal floats in late diffusion steps made CPU sampling ~6x slower without this.
        torch.set_flush_denormal(True)
    return device


def autocast(device: torch.device):
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)
