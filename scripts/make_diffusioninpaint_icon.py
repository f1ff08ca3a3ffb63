"""Draw DiffusionInpaint's module icon (128×128 PNG) in the style of scripts/make_icons.py: an axial chest slice with
a drawn region (dashed outline) being filled with lung texture, and the spark that marks generated images.

    python scripts/make_diffusioninpaint_icon.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_icons import ROOT, _sparkle, canvas, chest, finish, save  # noqa: E402

OUTLINE = (120, 200, 255, 255)


def icon() -> Image.Image:
    img, d, u = canvas()
    chest(d, u)
    # the region: lung texture (fine speckle) fading in from the bottom, as the fill goes slice by slice
    cx, cy, r = 87 * u, 64 * u, 15 * u
    rng = np.random.default_rng(1)
    for _ in range(900):
        a, rr = rng.uniform(0, 2 * math.pi), r * math.sqrt(rng.uniform())
        x, y = cx + rr * math.cos(a), cy + rr * math.sin(a)
        shade = int(40 + 70 * rng.uniform() * max(0.0, (y - (cy - r)) / (2 * r)))
        d.ellipse([x - 1.5 * u, y - 1.5 * u, x + 1.5 * u, y + 1.5 * u], fill=(shade, shade, shade, 255))
    for k in range(16):                                                             # dashed outline
        a0 = 360 * k / 16
        d.arc([cx - r, cy - r, cx + r, cy + r], a0, a0 + 13, fill=OUTLINE, width=int(2.5 * u))
    _sparkle(d, 104 * u, 24 * u, 15 * u)
    return finish(img)


def main() -> None:
    save(icon(), ROOT / "DiffusionInpaint" / "Resources" / "Icons" / "DiffusionInpaint.png")


if __name__ == "__main__":
    main()
