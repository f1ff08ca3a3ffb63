"""Draw the extension and module icons (128×128 PNG) so that they can be regenerated and restyled from code.

    python scripts/make_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

ROOT = Path(__file__).resolve().parents[1]
SIZE = 128
SCALE = 4  # drawn large, then downsampled: PIL draws without anti-aliasing
TUMOR = (235, 90, 50, 255)
SPARK = (255, 214, 90, 255)


def _sparkle(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float) -> None:
    w = r * 0.28
    draw.polygon([(cx, cy - r), (cx + w, cy - w), (cx + r, cy), (cx + w, cy + w),
                  (cx, cy + r), (cx - w, cy + w), (cx - r, cy), (cx - w, cy - w)], fill=SPARK)


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw, float]:
    """The large drawing canvas with the icons' rounded dark background; ``u`` is one 1/128 of its side."""
    s = SIZE * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    u = s / 128
    d.rounded_rectangle([2 * u, 2 * u, 126 * u, 126 * u], radius=22 * u, fill=(28, 34, 48, 255))
    return img, d, u


def chest(d: ImageDraw.ImageDraw, u: float) -> None:
    """An axial chest CT in cartoon form: body, two lungs, spine."""
    d.ellipse([12 * u, 26 * u, 116 * u, 106 * u], fill=(150, 150, 150, 255))       # body
    d.ellipse([22 * u, 36 * u, 60 * u, 96 * u], fill=(40, 40, 40, 255))            # right lung
    d.ellipse([68 * u, 36 * u, 106 * u, 96 * u], fill=(40, 40, 40, 255))           # left lung
    d.ellipse([57 * u, 84 * u, 71 * u, 98 * u], fill=(235, 235, 235, 255))         # vertebra


def finish(img: Image.Image) -> Image.Image:
    return img.filter(ImageFilter.SMOOTH).resize((SIZE, SIZE), Image.LANCZOS)


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, optimize=True)
    print(path.relative_to(ROOT), path.stat().st_size, "bytes")


def _chest_slice(tumor: tuple[float, float, float], sparkle: tuple[float, float, float]) -> Image.Image:
    """The chest slice with a tumour and a spark marking it synthetic."""
    img, d, u = canvas()
    chest(d, u)
    x, y, r = tumor
    d.ellipse([(x - r) * u, (y - r) * u, (x + r) * u, (y + r) * u], fill=TUMOR)
    _sparkle(d, sparkle[0] * u, sparkle[1] * u, sparkle[2] * u)
    return finish(img)


def main() -> None:
    icons = {
        ROOT / "Resources" / "Icons" / "RadSynth.png": _chest_slice((41, 62, 9), (100, 24, 17)),
        ROOT / "TumorSynth" / "Resources" / "Icons" / "TumorSynth.png": _chest_slice((86, 58, 12), (104, 28, 15)),
    }
    for path, img in icons.items():
        save(img, path)


if __name__ == "__main__":
    main()
