"""``radsynth reader build | analyse`` (and ``serve``, the browser reader, when radsynth.web is installed).

The answer key is written outside the study folder and is the only file that says which case is which; the
analysis refuses to run without it or with a key that does not match the study.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .common import progress_bar, user_errors, warn

reader_app = typer.Typer(help="Blinded reader studies (visual Turing tests): build a study, read it (Slicer module "
                              "ReaderStudy or 'radsynth reader serve'), analyse it.", no_args_is_help=True)


@reader_app.command("build")
def build_cmd(
        real: list[Path] = typer.Option(..., "--real", help="A real volume (NRRD, NIfTI, DICOM folder); repeat."),
        synthetic: list[Path] = typer.Option(..., "--synthetic", help="A synthetic volume; repeat."),
        out: Path = typer.Option(..., "--out", help="New study folder (must not exist or be empty)."),
        key_out: Optional[Path] = typer.Option(None, "--key-out",
                                               help="Answer key, outside the study (default: <out>.key.json)."),
        readers: int = typer.Option(2, "--readers", min=1, max=1000, help="Number of readers."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the reading orders (default: random, "
                                                                "recorded in study.json)."),
        likert: str = typer.Option("", "--likert", help="Comma-separated 1-5 items, e.g. realism,continuity,"
                                                        "conspicuity."),
        comment: bool = typer.Option(True, "--comment/--no-comment", help="Offer a free comment field."),
        preset: list[str] = typer.Option([], "--preset", help="Window/level preset NAME:W:L, e.g. Lung:1500:-600; "
                                                              "repeat; the first is the default."),
        time_limit: Optional[int] = typer.Option(None, "--time-limit", min=1, help="Seconds per case."),
        no_going_back: bool = typer.Option(False, "--no-going-back", help="Readers cannot return to a case."),
        no_changes: bool = typer.Option(False, "--no-changes", help="A given answer cannot be changed."),
        roi: Optional[str] = typer.Option(None, "--roi", help="Crop every case to I0:I1,J0:J1,K0:K1 (voxel "
                                                              "indices as Slicer shows them, ends included)."),
        slices: Optional[str] = typer.Option(None, "--slices", help="Show only axial slices K0:K1 (ends "
                                                                    "included)."),
        groups: Optional[Path] = typer.Option(None, "--groups", help="JSON {input path: {group: value}} for the "
                                                                     "analysis by case group."),
) -> None:
    """Write a blinded study folder and its sealed answer key."""
    from ..reader.build import CaseInput, build_study, parse_preset, parse_range, parse_roi
    from ..reader.errors import StudyError

    with user_errors():
        extra = _read_groups(groups)
        cases = [CaseInput(p, label, dict(extra.get(str(p), {}))) for label, paths in
                 (("real", real), ("synthetic", synthetic)) for p in paths]
        unknown = set(extra) - {str(p) for p in [*real, *synthetic]}
        if unknown:
            raise StudyError(f"--groups names inputs that are not listed: {', '.join(sorted(unknown))}")
        with progress_bar() as progress:
            result = build_study(
                cases, out, key_out, readers=readers, seed=seed, likert=[s for s in likert.split(",") if s.strip()],
                comment=comment, presets=[parse_preset(p) for p in preset] or None, time_limit_s=time_limit,
                allow_changes=not no_changes, no_going_back=no_going_back, roi=parse_roi(roi) if roi else None,
                slices=parse_range(slices, "Slice range") if slices else None, progress=progress)
    for message in result.warnings:
        warn(message)
    study = result.study
    typer.echo(f"Study {study.study_id}: {len(study.cases)} cases, {len(study.reader_ids)} readers, seed "
               f"{study.seed} -> {study.folder}")
    typer.echo(f"Answer key (keep it away from the readers): {result.key_path}")
    for reader in study.readers:
        typer.echo(f"  {reader['reader_id']}: token {reader['token']}")


@reader_app.command("analyse")
def analyse_cmd(
        study: Path = typer.Argument(..., help="Study folder."),
        key: Optional[Path] = typer.Option(None, "--key", help="The study's answer key (key.json)."),
        out: Path = typer.Option(Path("reader-report"), "--out", help="Report folder (outside the study)."),
        bootstrap: int = typer.Option(2000, "--bootstrap", min=0, help="Bootstrap resamples for the AUC intervals."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Bootstrap seed (default: the study's seed)."),
) -> None:
    """Accuracy, sensitivity, specificity, binomial test, ROC AUC with bootstrap CIs, kappa, reading times, groups;
    report.json, report.html + PNGs, reads.csv and an iMRMC input file."""
    from ..reader.report import analyse_study

    with user_errors():
        result = analyse_study(study, key, out, n_boot=bootstrap, seed=seed)
    for name, res in [*result["readers"].items(), ("pooled", result["pooled"])]:
        ci = res.get("auc_ci") or [None, None]
        typer.echo(f"{name:>7}: {res['n_read']:3d} reads  accuracy {_f(res['accuracy'])} "
                   f"(p {_f(res['binomial']['p_value'], 4)})  sensitivity {_f(res['sensitivity'])}  "
                   f"specificity {_f(res['specificity'])}  AUC {_f(res['auc'])} [{_f(ci[0])}, {_f(ci[1])}]")
    for item, agreement in result["agreement"].items():
        typer.echo(f"  kappa {item} ({agreement['method']}): {_f(agreement['kappa'])} "
                   f"over {agreement['n_cases']} cases")
    typer.echo(f"Report: {Path(out) / 'report.html'}")


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _read_groups(path: Optional[Path]) -> dict[str, dict]:
    from ..reader.errors import StudyError

    if path is None:
        return {}
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StudyError(f"Cannot read --groups {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise StudyError("--groups must be a JSON object mapping each input path to an object of group values.")
    return data


try:  # the browser reader lives in radsynth.web; mount it when that part is installed
    from .reader_serve import serve_command
except ImportError:  # pragma: no cover - radsynth.web missing
    pass
else:
    reader_app.command("serve")(serve_command)
