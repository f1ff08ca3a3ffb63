"""Draw CTGenerate's module icon (128×128 PNG) in the style of scripts/make_icons.py: a stack of axial slices, the
top ones growing out of the seed, and the spark that marks generated images.

    python scripts/make_ctgenerate_icon.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
SIZE, SCALE = 128, 4
SPARK = (255, 214, 90, 255)


def _slice(d: ImageDraw.ImageDraw, u: float, y: float, shade: int, alpha: int) -> None:
    """One axial chest slice seen obliquely: body ellipse with two lungs."""
    d.ellipse([18 * u, (y - 13) * u, 110 * u, (y + 13) * u], fill=(shade, shade, shade, alpha))
    d.ellipse([30 * u, (y - 8) * u, 60 * u, (y + 8) * u], fill=(40, 40, 40, alpha))
    d.ellipse([68 * u, (y - 8) * u, 98 * u, (y + 8) * u], fill=(40, 40, 40, alpha))


def icon() -> Image.Image:
    s = SIZE * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    u = s / 128
    d.rounded_rectangle([2 * u, 2 * u, 126 * u, 126 * u], radius=22 * u, fill=(28, 34, 48, 255))
    for i, y in enumerate((100, 80, 60, 40)):      # seed at the bottom, generated slices above, fading in
        _slice(d, u, y, 150 if i == 0 else 120, 255 if i == 0 else 255 - 45 * i)
    w, cx, cy, r = 0.28, 104 * u, 22 * u, 15 * u
    d.polygon([(cx, cy - r), (cx + w * r, cy - w * r), (cx + r, cy), (cx + w * r, cy + w * r), (cx, cy + r),
               (cx - w * r, cy + w * r), (cx - r, cy), (cx - w * r, cy - w * r)], fill=SPARK)
    return img.filter(ImageFilter.SMOOTH).resize((SIZE, SIZE), Image.LANCZOS)


def main() -> None:
    path = ROOT / "CTGenerate" / "Resources" / "Icons" / "CTGenerate.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    icon().save(path, optimize=True)
    print(path.relative_to(ROOT), path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
