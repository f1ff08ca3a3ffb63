#!/usr/bin/env python
"""Make the extension's screenshots (Resources/Screenshots/*.png) from a real demo run, not from a mock-up.

The demo's montage.png stacks one block per operation (lung2: tumour removed, lung1: tumour synthesized) above a
"SYNTHETIC" footer. Each screenshot is one block with that footer under it, so no published picture of a synthetic
volume lacks the mark.

    OMP_NUM_THREADS=1 .venv/bin/radsynth demo --out /tmp/demo_shots
    .venv/bin/python scripts/make_screenshots.py /tmp/demo_shots/montage.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "Resources" / "Screenshots"
#: one name per montage block, top to bottom (the order run_demo draws them in)
BLOCK_NAMES = ("TumorSynth-remove.png", "TumorSynth-synthesize.png")
WHITE = 250


def _ink_rows(gray: np.ndarray) -> list[tuple[int, int]]:
    """Runs [start, stop) of rows holding anything darker than white."""
    ink = (gray < WHITE).any(axis=1)
    runs, start = [], None
    for y, has_ink in enumerate(ink):
        if has_ink and start is None:
            start = y
        elif not has_ink and start is not None:
            runs.append((start, y))
            start = None
    if start is not None:
        runs.append((start, len(ink)))
    return runs


def split_montage(montage: Image.Image, blocks: int) -> list[Image.Image]:
    """Cut the montage into ``blocks`` equal-height blocks, each with the footer pasted under it."""
    rgb = montage.convert("RGB")
    gray = np.asarray(rgb.convert("L"))
    runs = _ink_rows(gray)
    if len(runs) < blocks + 1:
        raise SystemExit(f"montage has {len(runs)} rows of content; expected {blocks} blocks and a footer")
    footer_start, footer_stop = runs[-1]
    # the footer sits after the last block, separated by white rows: the blocks end in the middle of that gap
    body_end = (runs[-2][1] + footer_start) // 2
    height = body_end // blocks
    for b in range(1, blocks):
        if (gray[b * height] < WHITE).any():
            raise SystemExit(f"row {b * height} between blocks is not blank: the montage layout changed")
    pad = max(footer_start - body_end, 4)
    footer = rgb.crop((0, footer_start - pad, rgb.width, min(footer_stop + pad, rgb.height)))
    shots = []
    for b in range(blocks):
        block = rgb.crop((0, b * height, rgb.width, (b + 1) * height))
        shot = Image.new("RGB", (rgb.width, block.height + footer.height), "white")
        shot.paste(block, (0, 0))
        shot.paste(footer, (0, block.height))
        shots.append(shot)
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("montage", type=Path, help="montage.png written by `radsynth demo`")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    shots = split_montage(Image.open(args.montage), len(BLOCK_NAMES))
    args.out.mkdir(parents=True, exist_ok=True)
    for name, shot in zip(BLOCK_NAMES, shots):
        path = args.out / name
        shot.save(path, optimize=True)
        print(f"{path}  {shot.width}x{shot.height}  {path.stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
