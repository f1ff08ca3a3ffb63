"""The sample chest CTs (lung1, lung2: real NSCLC scans with tumour labels) in Slicer's SampleData module.

The files come from the pyradiomics-bhklab source distribution, fetched by package name with pip into RadSynth's
cache (``radsynth.sample_data``; inside Slicer pip runs through ``PythonSlicer``), never from a hard-coded URL.
SampleData then copies them from that cache (``file://`` URIs) into Slicer's cache and checks their SHA-256, so a
self-test fails loudly if the data ever changes. :func:`load` fetches first; the SampleData module's button works
once the files were fetched (by :func:`load`, ``radsynth sample-data`` or any self-test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radsynth.checksums import sha256_file
from radsynth.errors import RadSynthError

CATEGORY = "RadSynth"
CASES = ("lung1", "lung2")
KINDS = ("image", "label")
#: SHA-256 of the files in pyradiomics-bhklab 3.1.4 (radsynth.sample_data.VERSION)
CHECKSUMS = {
    ("lung1", "image"): "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
    ("lung1", "label"): "e9d9a88054d7bc1d3034193ff907ce6b8c6ba28a7bc3a16f23728982d1b6b50a",
    ("lung2", "image"): "aa2b94eec79127ed786798ac8dc3c013010e1692d5787bebfae1a1e9685a4651",
    ("lung2", "label"): "cef52738dc51aab69a48fe30639da956d2b911b1c2920439c091fab84727657a",
}


def cached_file(case: str, kind: str) -> Path:
    from radsynth.sample_data import cache_dir

    return cache_dir() / f"{case}_{kind}.nrrd"


def node_name(case: str, kind: str) -> str:
    return case if kind == "image" else f"{case} tumor"


def source(case: str) -> dict[str, Any]:
    """Keyword arguments of ``SampleDataLogic.registerCustomSampleDataSource`` for one case: the CT as a volume and
    its tumour label as a segmentation."""
    if case not in CASES:
        raise RadSynthError(f"Unknown RadSynth sample {case!r}; choose one of {', '.join(CASES)}.")
    return dict(category=CATEGORY, sampleName=f"RadSynth {case}",
                uris=[cached_file(case, k).as_uri() for k in KINDS],
                fileNames=[f"RadSynth_{case}_{k}.nrrd" for k in KINDS],
                nodeNames=[node_name(case, k) for k in KINDS],
                checksums=[f"SHA256:{CHECKSUMS[(case, k)]}" for k in KINDS],
                loadFileType=["VolumeFile", "SegmentationFile"])


def prepare(case: str) -> list[Path]:
    """Fetch the case into RadSynth's cache (pip, first use only) and check its checksums."""
    from radsynth.sample_data import sample_path

    source(case)  # refuses an unknown case before fetching anything
    paths = []
    for kind in KINDS:
        path = sample_path(case, kind)
        if sha256_file(path) != CHECKSUMS[(case, kind)]:
            raise RadSynthError(f"The cached sample file {path} does not have the expected checksum; delete it and "
                                "fetch the sample data again.")
        paths.append(path)
    return paths


# -- inside Slicer -------------------------------------------------------------------------------------------------
def register() -> None:
    """Add lung1 and lung2 to the SampleData module (call once the application has started)."""
    try:
        import SampleData
    except ImportError:  # an application built without the SampleData module
        return
    for case in CASES:
        SampleData.SampleDataLogic.registerCustomSampleDataSource(**source(case))


def load(case: str) -> list[Any]:
    """The case's nodes in the scene (CT volume, tumour segmentation), through SampleData, fetching it first."""
    import SampleData

    prepare(case)
    nodes = SampleData.SampleDataLogic().downloadSamples(f"RadSynth {case}")
    if len(nodes) != len(KINDS) or any(isinstance(n, str) for n in nodes):
        raise RadSynthError(f"SampleData could not load the RadSynth sample {case}; see the application log.")
    return nodes
