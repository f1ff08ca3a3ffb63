"""Montage PNGs from small synthetic volumes: size, physical aspect ratio, orientation handling."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest

from radsynth.errors import InvalidMaskError
from radsynth.evaluate import montage as mt
from radsynth.volume import Volume

SPACING = (0.7, 0.7, 5.0)   # (i, j, k): thin in-plane, thick slices, like the sample CTs


def _ct(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> tuple[Volume, Volume, Volume]:
    k, j, i = np.indices((24, 96, 96))
    body = ((i - 48) ** 2 + (j - 48) ** 2 < 40 ** 2)
    array = np.where(body, -800, -1000).astype(np.int16)
    r2 = ((i - 40) * SPACING[0] / 8) ** 2 + ((j - 50) * SPACING[1] / 6) ** 2 + ((k - 12) * SPACING[2] / 10) ** 2
    tumour = r2 < 1
    before = Volume(array, (0.0, 0.0, 0.0), SPACING, direction)
    after = before.with_array(np.where(tumour, 40, array).astype(np.int16))
    mask = before.with_array(tumour.astype(np.uint8))
    return before, after, mask


def _png_shape(path) -> tuple[int, int]:
    return mpimg.imread(str(path)).shape[:2]


def test_single_montage_size(tmp_path):
    before, after, mask = _ct()
    path = mt.montage(before, after, mask, tmp_path / "m.png", "test")
    assert path.exists()
    h, w = _png_shape(path)
    assert (w, h) == (round(mt.FIG_WIDTH_IN * mt.DPI), round((mt.BLOCK_HEIGHT_IN + mt.FOOTER_IN) * mt.DPI))


def test_combined_montage_stacks_blocks(tmp_path):
    before, after, mask = _ct()
    blocks = [mt.MontageBlock(before, after, mask, "one"), mt.MontageBlock(before, before, mask, "two")]
    h, w = _png_shape(mt.montage_blocks(blocks, tmp_path / "two.png"))
    assert h == round((2 * mt.BLOCK_HEIGHT_IN + mt.FOOTER_IN) * mt.DPI)


def test_panels_use_physical_aspect_ratio(tmp_path):
    """The coronal panel spans mm, not voxels: a 5 mm-slice volume must not look squashed 7×."""
    from matplotlib.figure import Figure
    before, after, mask = _ct()
    fig = Figure()
    mt._draw_block(fig, mt.MontageBlock(before, after, mask, "t"), (-1000, 100), fov_mm=60.0)
    coronal = fig.axes[1]
    image = coronal.get_images()[0]
    left, right, bottom, top = image.get_extent()
    # 96 columns of 0.7 mm and 24 slices of 5 mm: the extents in mm, whatever the voxel counts.
    assert right - left == pytest.approx(96 * 0.7)
    assert top - bottom == pytest.approx(24 * 5.0)
    assert coronal.get_xlim() == pytest.approx((-30, 30)) and coronal.get_aspect() == 1.0


def test_flipped_direction_is_displayed_like_lps(tmp_path):
    """A scan stored with a flipped axis shows the same panels as the same anatomy stored in LPS order."""
    before, after, mask = _ct()
    flip = lambda v: Volume(v.array[:, ::-1, :].copy(), (0.0, 95 * SPACING[1], 0.0), SPACING,  # noqa: E731
                            (1, 0, 0, 0, -1, 0, 0, 0, 1))
    a = mt.montage(before, after, mask, tmp_path / "lps.png", "t")
    b = mt.montage(flip(before), flip(after), flip(mask), tmp_path / "flipped.png", "t")
    assert np.array_equal(mpimg.imread(str(a)), mpimg.imread(str(b)))


def test_empty_mask_is_refused(tmp_path):
    before, after, mask = _ct()
    with pytest.raises(InvalidMaskError):
        mt.montage(before, after, mask.with_array(np.zeros_like(mask.array)), tmp_path / "x.png", "t")
    assert not (tmp_path / "x.png").exists()
