"""The Python packages the engine needs inside Slicer, installed the current Slicer way, after asking.

- Requirements come from the project's own ``pyproject.toml`` (installed next to this file by CMake; the source
  checkout's otherwise), as ``>=`` ranges: an exact pin there (``monai==1.6.1``, for reproducible tests) becomes a
  lower bound here, since an exact pin would fight with other extensions sharing Slicer's one Python.
- Packages Slicer already ships (numpy, scipy, SimpleITK) and the CLI's (typer, rich) are not asked for.
- torch comes from the PyTorch extension (``PyTorchUtils``), with the version range from the same file.
- Installing uses ``slicer.packaging.pip_ensure`` (``slicer.pydeps.pip_ensure`` in Slicer 5.11–5.12), else
  ``slicer.util.pip_install`` after a confirmation.
- Two known clashes are detected before anything runs, with what to do: an older MONAI installed by another
  extension (MONAI Label, for example), and the pyradiomics that SlicerRadiomics installs (it imports as
  ``radiomics`` too, and shadows pyradiomics-bhklab).

:func:`plan` is Qt-free and tested; :func:`ensure` is the Slicer part.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Optional

#: distribution -> import name, for what the engine needs inside Slicer beyond what Slicer ships
SLICER_PACKAGES = {"monai": "monai", "einops": "einops", "pyradiomics-bhklab": "radiomics",
                   "safetensors": "safetensors"}
TORCH = "torch"
_HERE = Path(__file__).resolve().parent
#: installed extension: next to this package (CMake copies it); source checkout: the repository root
PYPROJECT_CANDIDATES = (_HERE / "pyproject.toml", _HERE.parent / "pyproject.toml")
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*?)\s*(;.*)?$")


@dataclasses.dataclass(frozen=True)
class Requirement:
    name: str
    specifier: str = ""          # e.g. ">=1.6.1" or ">=0.4,<1"

    def __str__(self) -> str:
        return f"{self.name}{self.specifier}"

    @property
    def minimum(self) -> Optional[str]:
        m = re.search(r">=\s*([0-9][^,\s]*)", self.specifier)
        return m.group(1) if m else None


def parse_requirement(text: str) -> Requirement:
    """``name[extras] spec`` as a Requirement whose exact pins (``==``, ``~=``) are lower bounds (``>=``)."""
    m = _REQUIREMENT.match(text)
    if not m:
        raise ValueError(f"Not a requirement: {text!r}")
    spec = re.sub(r"\s+", "", m.group(3) or "")
    spec = re.sub(r"(?:===|==|~=)", ">=", spec)
    return Requirement(m.group(1), spec)


def read_pyproject_dependencies(path: Path) -> list[str]:
    """``[project] dependencies`` of a pyproject.toml (tomllib where Slicer's Python has it, else a small reader
    for the one list this file holds)."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = None
    if tomllib is not None:
        return list(tomllib.loads(text).get("project", {}).get("dependencies", []))
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.S | re.M)
    block = re.search(r"^dependencies\s*=\s*\[(.*?)\]", project.group(1) if project else "", re.S | re.M)
    return re.findall(r"[\"']([^\"']+)[\"']", block.group(1)) if block else []


def pyproject_path() -> Path:
    for candidate in PYPROJECT_CANDIDATES:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("RadSynth's pyproject.toml is missing from the extension; reinstall RadSynth.")


def requirements(path: Optional[Path] = None) -> dict[str, Requirement]:
    """The engine's requirements inside Slicer, by distribution name (torch included), as ranges."""
    wanted = {**SLICER_PACKAGES, TORCH: "torch"}
    out = {}
    for text in read_pyproject_dependencies(path or pyproject_path()):
        req = parse_requirement(text)
        if req.name.lower() in wanted:
            out[req.name.lower()] = req
    missing = sorted(set(wanted) - set(out))
    if missing:
        raise ValueError(f"pyproject.toml does not list {', '.join(missing)}")
    return out


# -- what is installed ---------------------------------------------------------------------------------------------
def _version_tuple(version: str) -> tuple:
    parts = []
    for piece in re.split(r"[.+-]", version):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def satisfies(version: Optional[str], req: Requirement) -> bool:
    if version is None:
        return False
    for clause in filter(None, req.specifier.split(",")):
        m = re.match(r"(>=|<=|!=|>|<)\s*(.+)", clause)
        if not m:
            continue
        have, want = _version_tuple(version), _version_tuple(m.group(2))
        ok = {">=": have >= want, "<=": have <= want, ">": have > want, "<": have < want,
              "!=": have != want}[m.group(1)]
        if not ok:
            return False
    return True


def installed_version(distribution: str) -> Optional[str]:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def radiomics_provider() -> Optional[tuple[str, Optional[str], str]]:
    """(distribution, version, folder) of the package ``import radiomics`` would load, or None when there is none.

    pyradiomics (SlicerRadiomics installs it into its own folder on Slicer's path) and pyradiomics-bhklab both
    provide ``radiomics``; the one found first on ``sys.path`` wins, whatever pip says is installed.
    """
    spec = importlib.util.find_spec("radiomics")
    if spec is None or not spec.origin:
        return None
    folder = os.path.dirname(os.path.dirname(os.path.abspath(spec.origin)))
    for dist in importlib.metadata.distributions(path=[folder]):
        top = (dist.read_text("top_level.txt") or "").split()
        name = dist.metadata["Name"] or ""
        if "radiomics" in top or name.lower() in ("pyradiomics", "pyradiomics-bhklab"):
            return name, dist.version, folder
    return "unknown", None, folder


@dataclasses.dataclass
class Plan:
    """What ``ensure`` must do: pip requirements to install, torch to get, and clashes to show the user."""
    pip: list[str]
    torch: Optional[str]              # the torch requirement when torch is missing, else None
    torch_too_old: Optional[str]      # a message when an installed torch is older than required
    blocking: list[str]               # clashes the user must resolve before RadSynth can run
    notes: list[str]                  # what pip_ensure will change, shown before asking

    @property
    def ready(self) -> bool:
        return not (self.pip or self.torch or self.torch_too_old or self.blocking)


def plan(reqs: Optional[dict[str, Requirement]] = None,
         version: Callable[[str], Optional[str]] = installed_version,
         radiomics: Callable[[], Optional[tuple]] = radiomics_provider) -> Plan:
    reqs = reqs or requirements()
    pip, blocking, notes = [], [], []
    torch_req = reqs[TORCH]
    torch_version = version(TORCH)
    torch_missing = str(torch_req) if torch_version is None else None
    too_old = None
    if torch_version is not None and not satisfies(torch_version, torch_req):
        too_old = (f"PyTorch {torch_version} is installed, but RadSynth needs {torch_req}. In the PyTorch Utils "
                   "module (Utilities), uninstall PyTorch, restart Slicer, and run RadSynth again: it installs a "
                   "suitable version.")
    for dist, req in reqs.items():
        if dist == TORCH:
            continue
        have = version(dist)
        if dist == "monai" and have is not None and not satisfies(have, req):
            notes.append(f"MONAI {have} is installed (perhaps by another extension such as MONAI Label); RadSynth "
                         f"needs {req} and will upgrade it. Restart Slicer afterwards; if the other extension "
                         "stops working, its developers' MONAI range and RadSynth's do not overlap.")
        if dist == "pyradiomics-bhklab":
            provider = radiomics()
            if provider is not None and provider[0].lower() != "pyradiomics-bhklab":
                name, ver, folder = provider
                blocking.append(
                    f"'import radiomics' loads {name} {ver or '(unknown version)'} from {folder} (installed by "
                    f"the SlicerRadiomics extension), not {req}, which RadSynth's presets and models were "
                    "measured with. Uninstall SlicerRadiomics in the Extensions Manager (or disable it under "
                    "Application settings → Modules), restart Slicer, and run RadSynth again.")
                continue
        if not satisfies(have, req):
            pip.append(str(req))
    return Plan(pip, torch_missing, too_old, blocking, notes)


# -- inside Slicer -------------------------------------------------------------------------------------------------
def _pip_ensure() -> Optional[Callable]:
    for module in ("slicer.packaging", "slicer.pydeps"):
        try:
            found = getattr(importlib.import_module(module), "pip_ensure", None)
        except ImportError:
            continue
        if found is not None:
            return found
    return None


def ensure(requester: str = "RadSynth", tr: Callable[[str], str] = lambda s: s) -> bool:
    """Install what the engine lacks, asking first; False (nothing changed) when the user declines or must act."""
    import slicer

    try:
        todo = plan()
    except (OSError, ValueError) as exc:
        slicer.util.errorDisplay(str(exc), windowTitle=requester)
        return False
    if todo.ready:
        return True
    if todo.blocking or todo.torch_too_old:
        slicer.util.errorDisplay("\n\n".join(todo.blocking + ([todo.torch_too_old] if todo.torch_too_old else [])),
                                 windowTitle=requester)
        return False
    if todo.torch and not _install_torch(todo.torch, requester, tr):
        return False
    if todo.pip:
        if not _install(todo.pip, todo.notes, requester, tr):
            return False
    importlib.invalidate_caches()
    return plan().ready


def _install_torch(requirement: str, requester: str, tr: Callable[[str], str]) -> bool:
    import slicer

    try:
        import PyTorchUtils
    except ImportError:
        slicer.util.errorDisplay(tr("{module} needs PyTorch. Install the 'PyTorch' extension from the Extensions "
                                    "Manager, restart Slicer, and try again.").format(module=requester),
                                 windowTitle=requester)
        return False
    logic = PyTorchUtils.PyTorchUtilsLogic()
    spec = requirement[len(TORCH):]
    try:
        torch = logic.installTorch(askConfirmation=True, torchVersionRequirement=spec)
    except TypeError:  # PyTorch extensions before the version argument
        torch = logic.installTorch(askConfirmation=True)
    return torch is not None


def _install(requirements_: list[str], notes: Iterable[str], requester: str, tr: Callable[[str], str]) -> bool:
    import slicer

    ensure_fn = _pip_ensure()
    notes = list(notes)
    if ensure_fn is not None:
        if notes and not slicer.util.confirmOkCancelDisplay("\n\n".join(notes), windowTitle=requester):
            return False
        from packaging.requirements import Requirement as PipRequirement  # Slicer ships packaging

        try:
            ensure_fn([PipRequirement(r) for r in requirements_], requester=requester)
        except RuntimeError:  # the user declined
            return False
        return True
    message = tr("{module} needs these Python packages, which will be downloaded and installed now:").format(
        module=requester)
    if not slicer.util.confirmOkCancelDisplay("\n".join([message, *requirements_, *notes]), windowTitle=requester):
        return False
    with slicer.util.WaitCursor():
        slicer.util.pip_install(requirements_)
    return True
