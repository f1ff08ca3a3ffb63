"""RadSynthLib.dependencies (what the engine needs inside Slicer, from the project's own pyproject.toml, as ranges;
the clashes to tell the user about) and RadSynthLib.sample_data (lung1/lung2 for SampleData, with checksums)."""

from __future__ import annotations

import builtins
import sys
from pathlib import Path

import pytest

from RadSynthLib import dependencies as deps  # noqa: E402
from RadSynthLib import sample_data  # noqa: E402

from radsynth.checksums import sha256_file  # noqa: E402
from radsynth.errors import RadSynthError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


# -- requirements --------------------------------------------------------------------------------------------------
def test_requirements_are_read_from_the_projects_pyproject_as_ranges():
    reqs = deps.requirements(PYPROJECT)
    assert set(reqs) == {"torch", "monai", "einops", "pyradiomics-bhklab", "safetensors"}
    listed = {deps.parse_requirement(t).name.lower(): t for t in deps.read_pyproject_dependencies(PYPROJECT)}
    for name, req in reqs.items():
        assert "==" not in str(req) and "~=" not in str(req), f"{req}: no exact pins inside Slicer"
        assert req.minimum is not None, f"{req}: a lower bound, as the project requires"
        assert req.minimum in listed[name], f"{req} does not come from pyproject's {listed[name]}"
    # what Slicer ships or only the CLI needs is not asked for
    assert not set(reqs) & {"numpy", "scipy", "simpleitk", "typer", "rich"}


def test_an_exact_pin_becomes_a_lower_bound():
    assert str(deps.parse_requirement("monai==1.6.1")) == "monai>=1.6.1"
    assert str(deps.parse_requirement("pkg ~= 2.0")) == "pkg>=2.0"
    assert str(deps.parse_requirement("pkg>=1.2,<3 ; python_version>'3'")) == "pkg>=1.2,<3"
    with pytest.raises(ValueError):
        deps.parse_requirement("== 1")


def test_the_fallback_reader_reads_the_same_list(monkeypatch):
    """Slicer's Python before 3.11 has no tomllib: the small reader must give the same requirements."""
    real = deps.read_pyproject_dependencies(PYPROJECT)
    original_import = builtins.__import__

    def no_tomllib(name, *args, **kwargs):
        if name == "tomllib":
            raise ImportError("no tomllib")
        return original_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "tomllib", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_tomllib)
    assert deps.read_pyproject_dependencies(PYPROJECT) == real


def test_a_pyproject_without_a_needed_package_is_refused(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\ndependencies = ["torch>=2.3", "monai>=1"]\n')
    with pytest.raises(ValueError, match="einops"):
        deps.requirements(bad)


def test_version_ranges():
    req = deps.parse_requirement("monai>=1.6.1,<2")
    assert deps.satisfies("1.6.1", req) and deps.satisfies("1.10.0", req)
    assert not deps.satisfies("1.5.2", req) and not deps.satisfies("2.0", req)
    assert not deps.satisfies(None, req)
    assert deps.satisfies("2.3.1+cu121", deps.parse_requirement("torch>=2.3"))


# -- what to install and what to tell the user -----------------------------------------------------------------------
def _versions(**have):
    table = {"torch": "2.5.0", "monai": "1.6.1", "einops": "0.8.0", "pyradiomics-bhklab": "3.1.4",
             "safetensors": "0.4.5", **have}
    return lambda name: table.get(name)


BHKLAB = lambda: ("pyradiomics-bhklab", "3.1.4", "/site-packages")  # noqa: E731


def test_nothing_to_do_when_everything_is_there():
    assert deps.plan(deps.requirements(PYPROJECT), _versions(), BHKLAB).ready


def test_missing_packages_are_installed_with_ranges_and_torch_from_the_pytorch_extension():
    todo = deps.plan(deps.requirements(PYPROJECT), _versions(torch=None, einops=None, safetensors=None), lambda: None)
    assert todo.torch == "torch>=2.3" and not todo.ready
    assert sorted(todo.pip) == ["einops>=0.7", "safetensors>=0.4"]
    todo = deps.plan(deps.requirements(PYPROJECT), _versions(**{"pyradiomics-bhklab": None}), lambda: None)
    assert todo.pip == ["pyradiomics-bhklab>=3.1.4"] and todo.torch is None


def test_an_older_monai_is_upgraded_with_a_note():
    todo = deps.plan(deps.requirements(PYPROJECT), _versions(monai="1.3.2"), BHKLAB)
    assert todo.pip == ["monai>=1.6.1"]
    assert len(todo.notes) == 1 and "MONAI 1.3.2" in todo.notes[0] and "restart" in todo.notes[0].lower()
    assert not todo.blocking


def test_an_older_torch_is_refused_with_what_to_do():
    todo = deps.plan(deps.requirements(PYPROJECT), _versions(torch="1.13.1"), BHKLAB)
    assert todo.torch is None and "PyTorch 1.13.1" in todo.torch_too_old and "uninstall" in todo.torch_too_old


def test_slicerradiomics_pyradiomics_shadowing_is_detected(tmp_path, monkeypatch):
    """SlicerRadiomics installs pyradiomics into its own folder on Slicer's path; both import as radiomics."""
    site = tmp_path / "SlicerRadiomics" / "lib" / "python3.9" / "site-packages"
    (site / "radiomics").mkdir(parents=True)
    (site / "radiomics" / "__init__.py").write_text("")
    info = site / "pyradiomics-3.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyradiomics\nVersion: 3.0.1\n")
    (info / "top_level.txt").write_text("radiomics\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "radiomics", raising=False)
    provider = deps.radiomics_provider()
    assert provider == ("pyradiomics", "3.0.1", str(site))
    todo = deps.plan(deps.requirements(PYPROJECT), _versions(), deps.radiomics_provider)
    assert len(todo.blocking) == 1 and "pyradiomics 3.0.1" in todo.blocking[0]
    assert "SlicerRadiomics" in todo.blocking[0] and "pyradiomics-bhklab>=3.1.4" in todo.blocking[0]
    assert "pyradiomics-bhklab>=3.1.4" not in todo.pip, "installing the fork would not help while shadowed"


def test_the_installed_radiomics_is_the_bhklab_fork():
    name, version, folder = deps.radiomics_provider()
    assert name.lower() == "pyradiomics-bhklab" and version


def test_this_environment_is_ready():
    """The test environment has what the engine needs (the same check the panel runs before a first run)."""
    assert deps.plan().ready


# -- sample data ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sample_data.CASES)
def test_sample_data_sources_carry_checksums_that_match_the_files(case):
    source = sample_data.source(case)
    paths = sample_data.prepare(case)
    assert source["category"] == "RadSynth" and source["sampleName"] == f"RadSynth {case}"
    assert source["loadFileType"] == ["VolumeFile", "SegmentationFile"]
    assert len(source["uris"]) == len(source["fileNames"]) == len(source["nodeNames"]) == len(source["checksums"])
    for uri, checksum, path in zip(source["uris"], source["checksums"], paths):
        assert uri == Path(path).as_uri()
        assert checksum == f"SHA256:{sha256_file(path)}"


def test_a_changed_sample_file_is_refused(tmp_path, monkeypatch):
    import shutil

    from radsynth import sample_data as engine_samples

    fake = tmp_path / "cache"
    target = fake / "sample-data" / f"{engine_samples.PACKAGE}-{engine_samples.VERSION}"
    target.mkdir(parents=True)
    for case in engine_samples.CASES:
        for kind in ("image", "label"):
            shutil.copy(engine_samples.sample_path(case, kind), target / f"{case}_{kind}.nrrd")
    with open(target / "lung2_label.nrrd", "ab") as fh:
        fh.write(b"\0")
    monkeypatch.setenv("RADSYNTH_CACHE", str(fake))
    sample_data.prepare("lung1")
    with pytest.raises(RadSynthError, match="checksum"):
        sample_data.prepare("lung2")


def test_unknown_sample_is_refused():
    with pytest.raises(RadSynthError, match="lung1"):
        sample_data.source("brain9")
