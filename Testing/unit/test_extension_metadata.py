"""The metadata the Slicer Extensions Index checks, checked here before a pull request to the index does.

The index's CI (Slicer/ExtensionsIndex, scripts/check_description_files.py and its pre-commit hooks) validates the
catalogue entry against its JSON schema, requires a known category, a licence file at the root, a project() name equal
to the entry's file name, a repository named Slicer*, and finds the icon and screenshot URLs in the top-level
CMakeLists.txt with line-based regular expressions. Its pull-request checklist adds: a 1-2 sentence description,
contributors as "Name (Org)", at least one screenshot, the licence named on the homepage, and the entry consistent
with CMakeLists.txt (dependencies). Slicer itself needs, per module, a CMakeLists.txt and an icon; the modules'
category, contributors, help and acknowledgement are read from their .py files with ast (Slicer's GUI is not
importable here).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from RadSynthLib import about  # noqa: E402

CATEGORY = "Image Synthesis"
EXTENSION_NAME = "RadSynth"
CATALOGUE_ENTRY = ROOT / f"{EXTENSION_NAME}.json"

# ACCEPTED_EXTENSION_CATEGORIES of Slicer/ExtensionsIndex scripts/check_description_files.py (main, August 2026).
INDEX_CATEGORIES = frozenset([
    "Active Learning", "Analysis", "Auto3dgm", "BigImage", "Cardiac", "Chest Imaging Platform", "Conda", "Converters",
    "DICOM", "DSCI", "Developer Tools", "Diffusion", "Examples", "Exporter", "FTV Segmentation", "Filtering",
    "Filtering.Morphology", "Filtering.Vesselness", "Holographic Display", "Image Synthesis", "IGT", "Informatics",
    "Netstim", "Neuroimaging", "Nuclear Medicine", "Orthodontics", "Osteotomy Planning", "Otolaryngology",
    "Photogrammetry", "Pipelines", "Planning", "Printing", "Quantification", "Radiotherapy", "Registration", "Remote",
    "Rendering", "SPHARM", "Segmentation", "Sequences", "Shape Analysis", "Shape Regression", "Shape Visualization",
    "Simulation", "SlicerCMF", "SlicerMorph", "Spectral Imaging", "Supervisely", "Surface Models", "SurfaceLearner",
    "Tomographic Reconstruction", "Tracking", "Tractography", "Training", "Ultrasound", "Utilities",
    "Vascular Modeling Toolkit", "Virtual Reality", "VisSimTools", "Web System Tools", "Wizards",
])

# The fields of Slicer's catalogue-entry schema (Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json), written
# out here so the test runs offline; the index validates the entry with check-jsonschema against the same fields.
INDEX_SCHEMA = {
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
SCHEMA_URL = re.compile(r"^https://raw\.githubusercontent\.com/Slicer/Slicer/main/Schemas/"
                        r"slicer-extension-catalog-entry-schema-v1\.0\.\d+\.json#?$")

# Slicer's extension description: every one of these must be set and non-empty
REQUIRED_VARIABLES = ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                      "EXTENSION_ICONURL", "EXTENSION_SCREENSHOTURLS", "EXTENSION_DEPENDS")
# the index's CI finds these two with line regexes: a set() split over lines, or a space before ")", is not found
INDEX_ICON_RE = re.compile(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', re.IGNORECASE)
INDEX_SCREENSHOTS_RE = re.compile(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', re.IGNORECASE)
INDEX_LICENSE_FILES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
CONTRIBUTOR = re.compile(r"^[A-Z][^(),]*[^\s(),] \([^()]+\)$")   # "Firstname Lastname (Org[, SubOrg])"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- CMake ------------------------------------------------------------------------------------------------------

_TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|#[^\n]*|([()])|([^\s()"#]+)')


def cmake_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command name in lower case, its arguments) in file order; quoted arguments unquoted, comments dropped."""
    commands, name, args, depth, last_word = [], None, [], 0, None
    for m in _TOKEN.finditer(text):
        quoted, paren, word = m.group(1), m.group(2), m.group(3)
        if m.group(0).startswith("#"):
            continue
        if paren == "(":
            if name is None:
                name, args, depth = (last_word or "").lower(), [], 1
            else:
                depth += 1
        elif paren == ")" and name is not None:
            depth -= 1
            if depth == 0:
                commands.append((name, args))
                name = None
        elif name is not None:
            args.append(quoted if quoted is not None else word)
        last_word = word
    return commands


def cmake_variables(text: str) -> dict[str, list[str]]:
    return {args[0]: args[1:] for name, args in cmake_commands(text) if name == "set" and args}


@pytest.fixture(scope="module")
def cmake_text() -> str:
    return (ROOT / "CMakeLists.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def variables(cmake_text) -> dict[str, list[str]]:
    return cmake_variables(cmake_text)


@pytest.fixture(scope="module")
def entry() -> dict:
    return json.loads(CATALOGUE_ENTRY.read_text(encoding="utf-8"))


def _value(variables, name) -> str:
    return " ".join(variables.get(name, [])).strip()


def _repository(url: str) -> tuple[str, str]:
    """(owner, name) of a github.com or raw.githubusercontent.com URL."""
    parts = urlsplit(url)
    assert parts.netloc in ("github.com", "raw.githubusercontent.com"), f"{url}: not on GitHub"
    owner, name = parts.path.strip("/").split("/")[:2]
    return owner, name.removesuffix(".git")


def _local_file(url: str, homepage: str) -> Path:
    """The checkout's file a raw URL of the extension's own repository serves."""
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.netloc == "raw.githubusercontent.com", \
        f"{url}: use the raw download URL (https://raw.githubusercontent.com/...), not a web page"
    assert _repository(url) == _repository(homepage), f"{url}: not in the extension's repository {homepage}"
    path = ROOT / Path(*parts.path.strip("/").split("/")[3:])   # owner/repo/branch/<path>
    assert path.is_file(), f"{url}: {path.relative_to(ROOT)} is not in the checkout"
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.relative_to(ROOT)} is not a PNG file"
    with Image.open(path) as image:
        image.verify()   # a truncated or corrupt PNG fails here
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_project_name_is_the_catalogue_entry_name(cmake_text):
    projects = [args[0] for name, args in cmake_commands(cmake_text) if name == "project"]
    assert projects[:1] == [EXTENSION_NAME], f"project() is {projects[:1]}; the index wants {CATALOGUE_ENTRY.stem}"
    assert not EXTENSION_NAME.lower().startswith("slicer"), "the index rejects extension names starting with Slicer"


@pytest.mark.parametrize("name", REQUIRED_VARIABLES)
def test_required_variable_is_set(variables, name):
    assert name in variables, f"CMakeLists.txt does not set {name}"
    assert _value(variables, name) and _value(variables, name) != "NA", f"{name} is empty"


def test_category_is_one_the_index_accepts(variables):
    assert "Synthesis" not in INDEX_CATEGORIES   # the category this extension used to have
    category = _value(variables, "EXTENSION_CATEGORY")
    assert category in INDEX_CATEGORIES, f"category {category!r} is not in the index's list"
    assert category == CATEGORY


def test_depends_on_pytorch(variables, entry):
    depends = _value(variables, "EXTENSION_DEPENDS").split()
    assert "PyTorch" in depends, f"EXTENSION_DEPENDS is {depends}: the modules refuse to run without torch"
    assert sorted(entry.get("build_dependencies", [])) == sorted(depends), \
        "RadSynth.json build_dependencies and CMakeLists.txt EXTENSION_DEPENDS differ"


def test_contributors_are_name_and_organisation(variables):
    contributors = [c for arg in variables["EXTENSION_CONTRIBUTORS"] for c in re.split(r"(?<=\))\s*,\s*", arg)]
    assert contributors
    for contributor in contributors:
        assert CONTRIBUTOR.match(contributor), f"contributor {contributor!r} is not 'Name (Organisation)'"
    assert contributors == about.CONTRIBUTORS, "CMakeLists.txt and RadSynthLib.about.CONTRIBUTORS differ"


def test_description_is_one_or_two_sentences(variables):
    description = _value(variables, "EXTENSION_DESCRIPTION")
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", description) if s]
    assert 1 <= len(sentences) <= 2 and len(description) <= 400, f"description: {len(sentences)} sentences"


def test_homepage_is_the_slicer_named_repository(variables):
    homepage = _value(variables, "EXTENSION_HOMEPAGE")
    assert homepage.startswith("https://github.com/")
    assert _repository(homepage)[1].startswith("Slicer"), "the index wants the repository named Slicer<Extension>"


def test_icon_url_is_found_by_the_index_and_is_a_png_in_the_checkout(cmake_text, variables):
    found = INDEX_ICON_RE.findall(cmake_text)
    assert found, "the index's regex does not find EXTENSION_ICONURL (keep set(...) on one line)"
    width, height = png_size(_local_file(found[0].strip(), _value(variables, "EXTENSION_HOMEPAGE")))
    assert width == height and 64 <= width <= 512, f"icon is {width}x{height}; Slicer shows a square (128x128) icon"


def test_screenshots_are_found_by_the_index_and_are_real_pngs(cmake_text, variables):
    found = INDEX_SCREENSHOTS_RE.findall(cmake_text)
    assert found, "the index's regex does not find EXTENSION_SCREENSHOTURLS (one line, no space before ')')"
    urls = found[0].split()
    assert urls, "at least one screenshot is required"
    for url in urls:
        path = _local_file(url, _value(variables, "EXTENSION_HOMEPAGE"))
        width, height = png_size(path)
        assert 400 <= width <= 4000 and 300 <= height <= 4000, f"{path.name} is {width}x{height}"
        assert path.stat().st_size < 2 * 1024 * 1024, f"{path.name} is over 2 MiB"


def test_license_is_apache_2_at_the_root():
    present = [name for name in INDEX_LICENSE_FILES if (ROOT / name).is_file()]
    assert present, "no licence file at the repository root"
    text = (ROOT / present[0]).read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS" in text, \
        "the licence file must hold the full Apache-2.0 text"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert re.search(r'^license\s*=\s*\{\s*text\s*=\s*"Apache-2\.0"', pyproject, re.MULTILINE), \
        "pyproject.toml and the licence file disagree"


def test_homepage_names_the_licence_and_shows_a_screenshot(variables):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "Apache" in readme, "the index wants the licence named on the homepage (README)"
    shots = [urlsplit(u).path.split("/main/", 1)[-1] for u in _value(variables, "EXTENSION_SCREENSHOTURLS").split()]
    assert any(s in readme for s in shots), "the homepage (README) shows none of the screenshots"


# --- the catalogue entry ---------------------------------------------------------------------------------------

def test_catalogue_entry_is_valid_against_the_index_schema(entry):
    jsonschema.validate(entry, INDEX_SCHEMA)
    assert SCHEMA_URL.match(entry["$schema"]), f"$schema {entry['$schema']!r} is not Slicer's catalogue schema"


def test_catalogue_entry_file_format():
    raw = CATALOGUE_ENTRY.read_bytes()
    assert b"\r" not in raw, "the index accepts LF line endings only"
    assert b"\t" not in raw and raw.endswith(b"}\n") and not raw.endswith(b"\n\n"), "formatting the index's hooks fix"


def test_catalogue_entry_agrees_with_cmakelists(entry, variables):
    assert entry["category"] == _value(variables, "EXTENSION_CATEGORY")
    assert urlsplit(entry["scm_url"]).scheme in ("https", "git")
    assert _repository(entry["scm_url"]) == _repository(_value(variables, "EXTENSION_HOMEPAGE"))
    assert entry.get("build_subdirectory", ".") == (_value(variables, "EXTENSION_BUILD_SUBDIRECTORY") or ".")
    assert entry.get("scm_revision"), "name a branch (main) so updates need no new pull request"


# --- the modules -----------------------------------------------------------------------------------------------

MODULES = sorted(p.parent.name for p in ROOT.glob("*/*.py") if p.stem == p.parent.name)


def test_modules_found():
    assert "TumorSynth" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_module_is_built_with_its_icon(module, cmake_text):
    folder = ROOT / module
    assert (folder / "CMakeLists.txt").is_file(), f"{module}/CMakeLists.txt is missing"
    module_cmake = cmake_variables((folder / "CMakeLists.txt").read_text(encoding="utf-8"))
    assert module_cmake.get("MODULE_NAME") == [module]
    icon = folder / "Resources" / "Icons" / f"{module}.png"
    assert icon.is_file(), f"{icon.relative_to(ROOT)} is missing"
    width, height = png_size(icon)
    assert width == height and 64 <= width <= 512, f"{icon.name} is {width}x{height}"
    resources = " ".join(module_cmake.get("MODULE_PYTHON_RESOURCES", []))
    assert "Resources/Icons/${MODULE_NAME}.png" in resources or f"Resources/Icons/{module}.png" in resources, \
        f"{module}/CMakeLists.txt does not install the icon"
    subdirectories = [args[0] for name, args in cmake_commands(cmake_text) if name == "add_subdirectory"]
    assert module in subdirectories, f"the top-level CMakeLists.txt does not add_subdirectory({module})"


class _ParentAssignments(ast.NodeVisitor):
    """self.parent.<attribute> = <expression> in a ScriptedLoadableModule subclass."""

    def __init__(self):
        self.values: dict[str, ast.expr] = {}

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Attribute)
                    and target.value.attr == "parent" and isinstance(target.value.value, ast.Name)
                    and target.value.value.id == "self"):
                self.values[target.attr] = node.value
        self.generic_visit(node)


def parent_assignments(module: str) -> dict[str, ast.expr]:
    tree = ast.parse((ROOT / module / f"{module}.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == module:
            visitor = _ParentAssignments()
            visitor.visit(node)
            return visitor.values
    raise AssertionError(f"{module}.py defines no class {module}")


def strings(node: ast.expr) -> list[str]:
    """The texts an expression evaluates to: literals, _("...") / translate("context", "..."), lists of those, and
    names taken from RadSynthLib.about."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [s for element in node.elts for s in strings(element)]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "tr", "translate",
                                                                                          "list", "tuple"):
        return strings(node.args[-1])
    if isinstance(node, ast.Name) and hasattr(about, node.id):
        value = getattr(about, node.id)
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "about":
        value = getattr(about, node.attr)
        return list(value) if isinstance(value, (list, tuple)) else [value]
    raise AssertionError(f"cannot read {ast.unparse(node)!r} without running Slicer")


def calls(node: ast.expr, function: str, module: str) -> list[list[str]]:
    """Arguments of each call to ``function`` (plain or as an attribute) inside ``node``: constants, and
    ``self.moduleName`` read as ``module``."""
    def argument(a: ast.expr):
        if isinstance(a, ast.Constant):
            return a.value
        if isinstance(a, ast.Attribute) and a.attr == "moduleName":
            return module
        return ast.unparse(a)
    found = []
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            name = sub.func.attr if isinstance(sub.func, ast.Attribute) else getattr(sub.func, "id", None)
            if name == function:
                found.append([argument(a) for a in sub.args])
    return found


@pytest.mark.parametrize("module", MODULES)
def test_module_category_is_image_synthesis(module):
    values = parent_assignments(module)
    assert "categories" in values, f"{module}.py sets no self.parent.categories"
    assert strings(values["categories"]) == [CATEGORY], f"{module}.py: categories {strings(values['categories'])}"


@pytest.mark.parametrize("module", MODULES)
def test_module_contributors_are_name_and_organisation(module):
    values = parent_assignments(module)
    contributors = strings(values["contributors"])
    assert contributors and all(CONTRIBUTOR.match(c) for c in contributors), \
        f"{module}.py contributors {contributors} are not 'Name (Organisation)'"


@pytest.mark.parametrize("module", MODULES)
def test_module_help_and_acknowledgement_come_from_about(module):
    values = parent_assignments(module)
    assert module in about.MODULES, f"RadSynthLib/about.py has no texts for {module}"
    assert [module] in calls(values.get("helpText", ast.Constant("")), "help_text", module), \
        f"{module}.py: helpText should be RadSynthLib.about.help_text({module!r}) (it links to the docs)"
    assert [module] in calls(values.get("acknowledgementText", ast.Constant("")), "acknowledgement", module), \
        f"{module}.py: acknowledgementText should be RadSynthLib.about.acknowledgement({module!r}) (cites papers)"


# --- the About texts -------------------------------------------------------------------------------------------

def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = markdown.read_text(encoding="utf-8")
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*#*$", text, re.MULTILINE)}


class _Balance(HTMLParser):
    VOID = {"br", "img", "hr"}

    def __init__(self):
        super().__init__()
        self.open: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs).get("href", ""))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:] or 'nothing'}"
        self.open.pop()


def parse_html(text: str) -> _Balance:
    parser = _Balance()
    parser.feed(text)
    parser.close()
    assert not parser.open, f"unclosed tags {parser.open}"
    return parser


@pytest.mark.parametrize("module", list(about.MODULES))
def test_help_links_resolve_to_docs_in_the_checkout(module):
    hrefs = parse_html(about.help_text(module)).hrefs
    assert hrefs, f"{module} help links to no documentation"
    for href in hrefs:
        assert href.startswith(about.DOCS_URL), f"{href} is not a page of the repository"
        path, _, anchor = href[len(about.DOCS_URL):].partition("#")
        assert (ROOT / path).is_file(), f"{module} help links to {path}, which is not in the checkout"
        assert path == "README.md" or path.startswith("docs/"), f"{path}: link README.md or docs/*.md"
        if anchor:
            assert anchor in anchors(ROOT / path), f"{path} has no heading for #{anchor}"
    assert _repository(about.REPOSITORY_URL) == _repository(_homepage())


def _homepage() -> str:
    return _value(cmake_variables((ROOT / "CMakeLists.txt").read_text(encoding="utf-8")), "EXTENSION_HOMEPAGE")


# the works each module's method comes from (titles from the seeds' first pages, shared/seeds/*.txt)
CITED = {
    "TumorSynth": ["Tumor Synthesis conditioned on Radiomics"],                                   # seed 004
    "DiffusionInpaint": ["High-Fidelity Image Synthesis from Lesion Maps using Diffusion Models",  # seed 001
                         "Imagining Infinity: Endless CT Datasets through Conditional Diffusion Models"],  # 002
    "CTGenerate": ["Enhancement of Medical Imaging Processing with Score-based Diffusion Model",    # seed 000
                   "Imagining Infinity: Endless CT Datasets through Conditional Diffusion Models",  # seed 002
                   "Generating abdominal CT scan data for pancreatic cancer detection using latent diffusion",  # 003
                   "MAISI: Medical AI for Synthetic Imaging"],
    "ReaderStudy": ["visual Turing test"],
}
SOFTWARE = ["3D Slicer", "MONAI", "Computational Radiomics System to Decode the Radiographic Phenotype",
            "Cancer Research", "SimpleITK", "PyTorch"]


@pytest.mark.parametrize("module", list(about.MODULES))
def test_acknowledgement_cites_the_method_papers_and_the_software(module):
    text = about.acknowledgement(module)
    parse_html(text)
    for title in CITED[module] + SOFTWARE:
        assert title in text, f"{module} acknowledgement does not cite {title!r}"


def test_synthesis_modules_say_outputs_are_marked_synthetic():
    for module, entry in about.MODULES.items():
        marked = "marked synthetic" in about.help_text(module)
        assert marked == entry.makes_images, module


def test_unknown_module_is_a_clear_error():
    with pytest.raises(ValueError, match="TumorSynth"):
        about.help_text("TumorSynt")
    with pytest.raises(ValueError, match="known"):
        about.acknowledgement("")
