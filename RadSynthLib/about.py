"""The About texts of the RadSynth modules: help with links to the documentation, acknowledgement with the papers each
module's method comes from.

One place for all four modules, so their panels agree, the extension's metadata test can check every link against
the checkout, and a paper is cited the same way everywhere. Importable without Slicer (no Qt, no MRML).
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

try:
    from slicer.i18n import tr as _
except ImportError:  # outside Slicer (tests, the slicer-core wheel) texts stay in English
    def _(text: str) -> str:
        return text

REPOSITORY_URL = "https://github.com/radsynth/SlicerRadSynth"
#: where a checkout's files are shown on the web; help links are this + a path in the repository
DOCS_URL = REPOSITORY_URL + "/blob/main/"
#: "Name (Org)", as the Extensions Index and Slicer's module panels expect
CONTRIBUTORS = ["RadSynth maintainers (RadSynth project)"]


@dataclass(frozen=True)
class Reference:
    authors: str
    title: str
    venue: str
    url: str = ""

    def html(self) -> str:
        title = escape(self.title, quote=False)
        if self.url:
            title = f'<a href="{escape(self.url)}">{title}</a>'
        authors = escape(self.authors, quote=False).rstrip(".")   # "et al." ends in its own full stop
        return f"{authors}. {title}. {escape(self.venue, quote=False)}."


# The method papers (the seeds the modules re-implement, and the methods they build on)
KIM_2025 = Reference("Kim J, Na I, Ko ES, Park H", "Tumor Synthesis conditioned on Radiomics",
                     "IEEE/CVF Winter Conference on Applications of Computer Vision (WACV), 2025")
ZHAO_2023 = Reference("Zhao X", "High-Fidelity Image Synthesis from Lesion Maps using Diffusion Models",
                      "MEng individual project, Department of Computing, Imperial College London, 2023")
SEDYKH_2024 = Reference("Sedykh E", "Imagining Infinity: Endless CT Datasets through Conditional Diffusion Models",
                        "Master's thesis, Institute of Computer Science, University of Tartu, 2024")
JEONG_2023 = Reference("Jeong J (정지현)", "Enhancement of Medical Imaging Processing with Score-based Diffusion Model",
                       "Master's thesis, Graduate School, University of Ulsan, 2023")
DRENTH_2024 = Reference("Drenth O", "Generating abdominal CT scan data for pancreatic cancer detection using latent "
                        "diffusion", "Bachelor thesis, LIACS, Leiden University, 2024")
GUO_2025_MAISI = Reference("Guo P, Zhao C, Yang D, Xu Z, Nath V, Tang Y, et al.", "MAISI: Medical AI for Synthetic "
                           "Imaging", "IEEE/CVF Winter Conference on Applications of Computer Vision (WACV), 2025, "
                           "pp. 4430-4441", "https://arxiv.org/abs/2409.11169")
LI_2023_BBDM = Reference("Li B, Xue K, Liu B, Lai YK", "BBDM: Image-to-Image Translation with Brownian Bridge "
                         "Diffusion Models", "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR), "
                         "2023")
ESSER_2021_VQGAN = Reference("Esser P, Rombach R, Ommer B", "Taming Transformers for High-Resolution Image "
                             "Synthesis", "IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR), 2021")
LUGMAYR_2022_REPAINT = Reference("Lugmayr A, Danelljan M, Romero A, Yu F, Timofte R, Van Gool L", "RePaint: "
                                 "Inpainting using Denoising Diffusion Probabilistic Models", "IEEE/CVF Conference "
                                 "on Computer Vision and Pattern Recognition (CVPR), 2022")
SAHARIA_2022_PALETTE = Reference("Saharia C, Chan W, Chang H, Lee C, Ho J, Salimans T, Fleet D, Norouzi M",
                                 "Palette: Image-to-Image Diffusion Models", "ACM SIGGRAPH 2022 Conference "
                                 "Proceedings, 2022")
SONG_2021_SDE = Reference("Song Y, Sohl-Dickstein J, Kingma DP, Kumar A, Ermon S, Poole B", "Score-Based Generative "
                          "Modeling through Stochastic Differential Equations", "International Conference on "
                          "Learning Representations (ICLR), 2021")
CHUQUICUSMA_2018 = Reference("Chuquicusma MJM, Hussein S, Burt J, Bagci U", "How to fool radiologists with "
                             "generative adversarial networks? A visual Turing test for lung cancer diagnosis",
                             "IEEE International Symposium on Biomedical Imaging (ISBI), 2018, pp. 240-244")

# The software every module runs on
FEDOROV_2012_SLICER = Reference("Fedorov A, Beichel R, Kalpathy-Cramer J, et al.", "3D Slicer as an Image Computing "
                                "Platform for the Quantitative Imaging Network", "Magnetic Resonance Imaging 30(9): "
                                "1323-1341, 2012")
CARDOSO_2022_MONAI = Reference("Cardoso MJ, Li W, Brown R, et al.", "MONAI: An open-source framework for deep "
                               "learning in healthcare", "arXiv:2211.02701, 2022", "https://arxiv.org/abs/2211.02701")
VAN_GRIETHUYSEN_2017 = Reference("van Griethuysen JJM, Fedorov A, Parmar C, et al.", "Computational Radiomics System "
                                 "to Decode the Radiographic Phenotype", "Cancer Research 77(21): e104-e107, 2017")
LOWEKAMP_2013_SIMPLEITK = Reference("Lowekamp BC, Chen DT, Ibáñez L, Blezek D", "The Design of SimpleITK",
                                    "Frontiers in Neuroinformatics 7: 45, 2013")
PASZKE_2019_PYTORCH = Reference("Paszke A, Gross S, Massa F, et al.", "PyTorch: An Imperative Style, High-Performance "
                                "Deep Learning Library", "Advances in Neural Information Processing Systems 32 "
                                "(NeurIPS), 2019")
SOFTWARE = (FEDOROV_2012_SLICER, CARDOSO_2022_MONAI, VAN_GRIETHUYSEN_2017, LOWEKAMP_2013_SIMPLEITK,
            PASZKE_2019_PYTORCH)


@dataclass(frozen=True)
class _Module:
    docs: tuple[tuple[str, str], ...]   # (label, path in the repository[#anchor])
    papers: tuple[Reference, ...]
    makes_images: bool = True


_README = ("README", "README.md#3d-slicer")
MODULES = {
    "TumorSynth": _Module((_README, ("texture path", "docs/texture-path.md")),
                          (KIM_2025, LI_2023_BBDM, ESSER_2021_VQGAN)),
    "DiffusionInpaint": _Module((_README, ("method", "docs/diffusion-inpaint.md")),
                                (ZHAO_2023, SEDYKH_2024, LUGMAYR_2022_REPAINT, SAHARIA_2022_PALETTE)),
    "CTGenerate": _Module((_README,), (JEONG_2023, SEDYKH_2024, DRENTH_2024, GUO_2025_MAISI, SONG_2021_SDE)),
    "ReaderStudy": _Module((_README, ("reader studies", "docs/reader-study.md")),
                           (CHUQUICUSMA_2018, KIM_2025, DRENTH_2024, JEONG_2023), makes_images=False),
}


def _module(module: str) -> _Module:
    try:
        return MODULES[module]
    except KeyError:
        raise ValueError(f"no About text for module {module!r}; known: {', '.join(MODULES)}") from None


def _summary(module: str) -> str:
    # Built at call time, one literal per _() call, so Slicer's string extraction finds every text.
    if module == "TumorSynth":
        return _("Remove a tumour (fill it with healthy-looking tissue) or synthesize tumour tissue inside a segment, "
                 "with the radiomics texture of another tumour or of a preset, using diffusion models. Place a new "
                 "tumour at a clicked point or in a painted region, with shape and texture sliders; move, resize or "
                 "re-texture a tumour; generate several variants. Each run adds new nodes and selects them as the "
                 "inputs of the next, so you can iterate.")
    if module == "DiffusionInpaint":
        return _("Draw a region with the Segment Editor and let a diffusion model fill it: healthy tissue, new "
                 "texture for the same anatomy, or CT rendered from a lesion map.")
    if module == "CTGenerate":
        return _("Generate CT with diffusion models: grow a volume slice by slice from seed slices, generate CT "
                 "that follows an organ map, or generate a whole volume with latent diffusion.")
    if module == "ReaderStudy":
        return _("Read a blinded reader study (a visual Turing test of synthetic images). Choose the study folder, "
                 "enter your personal reader token and press Start. Each case is shown on its own, named only "
                 "\"Case N of M\"; answer real or synthetic with your confidence (and the study's other questions), "
                 "then Save and next. Answers are saved at once: after a crash or a restart, Start again resumes at "
                 "your first unanswered case. Build and analyse studies with <code>radsynth reader build</code> and "
                 "<code>radsynth reader analyse</code>.")
    raise ValueError(f"no summary for module {module!r}")


def docs_links(module: str) -> list[tuple[str, str]]:
    """(label, absolute URL) of each documentation page the module's help links to."""
    return [(label, DOCS_URL + path) for label, path in _module(module).docs]


def help_text(module: str) -> str:
    """The module's help (HTML): what it does, the synthetic mark, and links to the documentation."""
    about = _module(module)
    parts = [_summary(module)]
    if about.makes_images:
        parts.append(_("Inputs are never modified. Every output volume is <b>marked synthetic</b>: its name ends in "
                       "\" - synthetic\", it carries the node attribute <code>RadSynth.Synthetic=1</code>, and the "
                       "mark is written into saved files. The bundled models are demo models, for trying the software "
                       "only."))
    links = ", ".join(f'<a href="{escape(url)}">{escape(label, quote=False)}</a>' for label, url in docs_links(module))
    parts.append(_("Documentation: {links}.").format(links=links))
    return "<br>".join(parts)


def acknowledgement(module: str) -> str:
    """The module's acknowledgement (HTML): the method papers, then the software RadSynth is built on."""
    about = _module(module)
    if about.makes_images:
        method = _("The method follows these works:")
    else:
        method = _("The reader-study protocol (blinded forced choice real or synthetic, with confidence, as a visual "
                   "Turing test) follows these works:")
    return (f"{method}<ul>{''.join(f'<li>{p.html()}</li>' for p in about.papers)}</ul>"
            + _("RadSynth is built on 3D Slicer, MONAI, pyradiomics, SimpleITK and PyTorch:")
            + f"<ul>{''.join(f'<li>{p.html()}</li>' for p in SOFTWARE)}</ul>")
