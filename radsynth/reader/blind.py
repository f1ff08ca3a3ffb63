"""Re-write every case the same way, so that nothing but the voxels differs between real and synthetic cases.

A case leaves here as a gzip NRRD of int16 voxels written by SimpleITK from a bare array: no metadata keys at all
(so no ``RadSynth.Synthetic`` mark, no provenance, no ITK filter names), geometry rounded so that float noise from
a processing chain cannot mark a file, and then padded with comment lines to one common size, because gzip sizes
follow content (a smooth synthetic volume compresses better than a noisy real one). The padding sits in the gzip
stream's own header comment, which every gzip reader skips.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..volume import Volume
from .errors import StudyError

#: the only header fields a case file may have, in SimpleITK's order (comments aside)
HEADER_FIELDS = ("type", "dimension", "space", "sizes", "space directions", "kinds", "endian", "encoding",
                 "space origin")
MIN_PAD = 64           # every file gets padding, so that padded and unpadded files cannot be told apart
INT16 = np.iinfo(np.int16)

#: a region of interest: inclusive voxel index ranges (i0, i1), (j0, j1), (k0, k1) as Slicer's IJK shows them
Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def crop(volume: Volume, roi: Optional[Box]) -> Volume:
    if roi is None:
        return volume
    k, j, i = volume.shape
    (i0, i1), (j0, j1), (k0, k1) = roi
    if not (0 <= i0 <= i1 < i and 0 <= j0 <= j1 < j and 0 <= k0 <= k1 < k):
        raise StudyError(f"The region of interest I {i0}:{i1}, J {j0}:{j1}, K {k0}:{k1} does not fit in an image "
                         f"of {i}×{j}×{k} voxels (indices start at 0 and both ends are included).")
    origin = volume.index_to_physical(np.array([[k0, j0, i0]]))[0]
    return Volume(volume.array[k0:k1 + 1, j0:j1 + 1, i0:i1 + 1].copy(), tuple(origin), volume.spacing,
                  volume.direction, dict(volume.metadata))


def to_int16(array: np.ndarray) -> tuple[np.ndarray, int]:
    """int16 voxels (rounded, clipped) and how many voxels had to be clipped."""
    if array.dtype == np.int16:
        return array, 0
    values = np.rint(array) if np.issubdtype(array.dtype, np.floating) else array
    clipped = int(np.count_nonzero((values < INT16.min) | (values > INT16.max)))
    return np.clip(values, INT16.min, INT16.max).astype(np.int16), clipped


def bare_image(volume: Volume) -> sitk.Image:
    """A SimpleITK image with the volume's voxels and rounded geometry and no metadata at all."""
    img = sitk.GetImageFromArray(np.ascontiguousarray(volume.array))
    img.SetSpacing(_rounded(volume.spacing))
    img.SetOrigin(_rounded(volume.origin))
    img.SetDirection(_rounded(volume.direction))
    return img


def _rounded(values) -> tuple[float, ...]:
    """7 significant digits: what a float32 round trip keeps, so a geometry that went through float32 somewhere in
    a synthesis chain prints like the original's (0.1 µm on a 500 mm origin)."""
    return tuple(float(f"{float(v):.7g}") + 0.0 for v in values)


def write_case(volume: Volume, path: Path) -> None:
    sitk.WriteImage(bare_image(volume), str(path), useCompression=True)
    fields = header_fields(path)
    if tuple(fields) != HEADER_FIELDS or fields["type"] != "short" or fields["encoding"] != "gzip":
        # a SimpleITK version that writes other fields would break blinding silently; stop instead
        raise StudyError(f"SimpleITK wrote unexpected NRRD header fields {list(fields)}; the study was not built.")


def _header_end(head: bytes) -> int:
    end = head.find(b"\n\n")
    if end < 0:
        raise StudyError("A case file has no NRRD header end.")
    return end + 1


def header_fields(path: Path) -> dict[str, str]:
    """The NRRD header's fields (comments skipped), in file order."""
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    lines = head[:_header_end(head)].decode("latin-1").splitlines()
    if not lines or not lines[0].startswith("NRRD"):
        raise StudyError(f"{path.name} is not an NRRD file.")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition(": ")
        fields[key] = value if sep else ""
    return fields


def pad_to(path: Path, size: int) -> None:
    """Grow the file to exactly ``size`` bytes with a gzip header comment (FCOMMENT) in front of the voxel data.

    Every gzip reader skips the comment, and the NRRD header stays as SimpleITK wrote it.
    """
    current = path.stat().st_size
    pad = size - current - 1               # the comment ends with a zero byte
    if pad < MIN_PAD - 1:
        raise StudyError(f"Internal error: padding of {pad} bytes is too small.")
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    start = _header_end(head) + 1          # the blank line
    gz = head[start:start + 10]
    if gz[:3] != b"\x1f\x8b\x08" or gz[3] != 0:
        # zlib writes a bare header (no name, extra field or header CRC); anything else would need parsing
        raise StudyError("Internal error: the case's gzip stream does not have the expected plain header.")
    tmp = path.with_name(path.name + ".pad")
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read(start))
        header = bytearray(src.read(10))
        header[3] = 0x10                   # FCOMMENT
        dst.write(bytes(header))
        dst.write(b"." * pad + b"\0")
        shutil.copyfileobj(src, dst, 1 << 20)
    os.replace(tmp, path)
    if path.stat().st_size != size:
        raise StudyError("Internal error: a padded case file has the wrong size.")


def common_size(paths: Sequence[Path]) -> int:
    return max(p.stat().st_size for p in paths) + MIN_PAD
