"""Write the analysis: report.json, report.html with PNG plots, reads.csv, and the iMRMC export."""

from __future__ import annotations

import csv
import html
import json
import os
from pathlib import Path
from typing import Any, Optional, Union

from .analysis import analyse, latest_reads
from .errors import StudyError
from .imrmc import write_imrmc
from .key import open_key
from .questions import SYNTHETIC
from .responses import ResponseStore
from .study import Study


def analyse_study(folder: Union[str, Path], key_path: Union[str, Path, None], out: Union[str, Path],
                  n_boot: int = 2000, seed: Optional[int] = None) -> dict[str, Any]:
    """Open the study and its key (refusing a wrong key before anything is written), analyse, write the report."""
    study = Study.open(folder)
    key = open_key(key_path, study)
    study.verify()
    result = analyse(study, key, n_boot, seed)
    out = Path(out)
    if out.resolve().is_relative_to(study.folder.resolve()):
        raise StudyError("Write the report outside the study folder: it reveals the answer key to readers.")
    out.mkdir(parents=True, exist_ok=True)
    reads = latest_reads(study, ResponseStore(study))
    (out / "report.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _write_reads_csv(study, key, reads, out / "reads.csv")
    write_imrmc(study, key, reads, out)
    plots = _plots(result, out)
    (out / "report.html").write_text(_html(result, plots), encoding="utf-8")
    return result


def _write_reads_csv(study, key, reads, path: Path) -> None:
    items = [q["id"] for q in study.questions]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["reader_id", "case_id", "truth", *items, "shown_at", "answered_at", "reading_time_s",
                         *[f"group_{g}" for g in sorted({g for v in key.groups.values() for g in v})]])
        groups = sorted({g for v in key.groups.values() for g in v})
        for r in study.reader_ids:
            for c in study.order(r):
                row = reads.get(r, {}).get(c)
                if row is None:
                    continue
                writer.writerow([r, c, key.truth[c], *[row["answers"].get(i, "") for i in items], row["shown_at"],
                                 row["answered_at"], round(row["answered_at"] - row["shown_at"], 3),
                                 *[key.groups.get(c, {}).get(g, "") for g in groups]])


def _plots(result: dict[str, Any], out: Path) -> list[str]:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(5, 5))
    for reader, res in result["readers"].items():
        ax.plot(res["roc"]["fpr"], res["roc"]["tpr"], marker=".", label=f"{reader} (AUC {_fmt(res['auc'])})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="chance")
    ax.set(xlabel="False positive rate (real called synthetic)", ylabel="True positive rate (synthetic found)",
           title="ROC of the signed confidence rating", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8, loc="lower right")
    names.append(_save(fig, out / "roc.png"))

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [*result["readers"], "pooled"]
    parts = [*result["readers"].values(), result["pooled"]]
    acc = [p["accuracy"] or 0 for p in parts]
    err = [[a - (p["binomial"]["ci_low"] or a) for a, p in zip(acc, parts)],
           [(p["binomial"]["ci_high"] or a) - a for a, p in zip(acc, parts)]]
    ax.bar(labels, acc, yerr=err, capsize=4, color=["#4c72b0"] * (len(labels) - 1) + ["#dd8452"])
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set(ylim=(0, 1), ylabel="Accuracy (95 % exact CI)", title="Real vs synthetic: accuracy against chance")
    names.append(_save(fig, out / "accuracy.png"))

    times = result["reading_time_by_truth"]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(list(times), [t["median_s"] or 0 for t in times.values()], color=["#55a868", "#c44e52"])
    ax.set(ylabel="Median reading time (s)", title="Reading time by truth")
    names.append(_save(fig, out / "reading_time.png"))

    scales = result["pooled"]["scales"]
    if scales:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        width = 0.38
        for n, (truth, colour) in enumerate((("real", "#55a868"), (SYNTHETIC, "#c44e52"))):
            ax.bar([i + n * width for i in range(len(scales))], [v[truth] or 0 for v in scales.values()], width,
                   label=truth, color=colour)
        ax.set_xticks([i + width / 2 for i in range(len(scales))], list(scales))
        ax.set(ylim=(0, 5), ylabel="Mean rating (1-5)", title="Likert items by truth")
        ax.legend()
        names.append(_save(fig, out / "likert.png"))
    return names


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _ci(ci) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci and ci[0] is not None else "–"


def _html(result: dict[str, Any], plots: list[str]) -> str:
    rows = []
    for name, res in [*result["readers"].items(), ("pooled", result["pooled"])]:
        auc_ci = res.get("auc_ci")
        rows.append("<tr>" + "".join(f"<td>{v}</td>" for v in (
            html.escape(name), res["n_read"], _fmt(res["accuracy"]), _fmt(res["sensitivity"]),
            _fmt(res["specificity"]), _fmt(res["binomial"]["p_value"], 4), _fmt(res["auc"]), _ci(auc_ci),
            _fmt(res["reading_time"]["median_s"], 1))) + "</tr>")
    agreement = "".join(f"<tr><td>{html.escape(item)}</td><td>{a['method']}</td><td>{_fmt(a['kappa'])}</td>"
                        f"<td>{a['n_cases']}</td></tr>" for item, a in result["agreement"].items())
    groups = "".join(f"<tr><td>{html.escape(g)}</td><td>{html.escape(v)}</td><td>{s['n_cases']}</td>"
                     f"<td>{s['n_reads']}</td><td>{_fmt(s['accuracy'])}</td><td>{_fmt(s['auc_vs_real'])}</td></tr>"
                     for g, values in result["groups"].items() for v, s in values.items())
    definitions = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                          for k, v in result["definitions"].items())
    images = "".join(f'<img src="{p}" alt="{p}">' for p in plots)
    missing = ", ".join(result["readers_without_answers"]) or "none"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reader study {result['study_id']}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}img{{max-width:48%;margin:4px}}</style></head><body>
<h1>Reader study {result['study_id']}</h1>
<p>{result['n_cases']} cases ({result['n_real']} real, {result['n_synthetic']} synthetic); analysed
{result['analysed_at']}; bootstrap {result['bootstrap']['n']} resamples, seed {result['bootstrap']['seed']}.
Readers without answers: {html.escape(missing)}.</p>
<h2>Detection of synthetic cases</h2>
<table><tr><th>reader</th><th>reads</th><th>accuracy</th><th>sensitivity</th><th>specificity</th>
<th>binomial p</th><th>AUC</th><th>AUC 95 % CI</th><th>median time (s)</th></tr>{''.join(rows)}</table>
<p>The pooled AUC is the mean of the readers' AUCs (CI: readers and cases resampled).</p>
<h2>Agreement between readers</h2><table><tr><th>item</th><th>method</th><th>kappa</th><th>cases</th></tr>
{agreement}</table>
<h2>By case group</h2><table><tr><th>group</th><th>value</th><th>cases</th><th>reads</th><th>accuracy</th>
<th>AUC vs real</th></tr>{groups}</table>
<h2>Plots</h2>{images}
<h2>Definitions</h2><dl>{definitions}</dl>
<p>Files: report.json, reads.csv, reads.imrmc (iMRMC input), imrmc_ids.csv.</p>
</body></html>
"""
