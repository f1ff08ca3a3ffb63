"""Export the reads in the iMRMC input format (.imrmc) for multi-reader multi-case ROC analysis.

The format (DIDSR/iMRMC, also read by RJafroc's ``DfReadDataFile(format = "iMRMC")``): free description lines,
then ``NR:`` readers, ``N0:`` signal-absent cases, ``N1:`` signal-present cases, ``NM:`` modalities, then
``BEGIN DATA:`` and one ``readerID,caseID,modalityID,score`` line per observation. Truth lines come first, with
reader ``-1`` and modality ``0`` and score 0 (absent) or 1 (present). Here signal-present = synthetic, the score is
the signed rating of :mod:`.stats`, there is one modality, and readers and cases are numbered 1… (RJafroc wants
integers); ``imrmc_ids.csv`` maps the numbers back to reader and case ids.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from .key import AnswerKey
from .questions import SYNTHETIC
from .stats import signed_rating
from .study import Study


def write_imrmc(study: Study, key: AnswerKey, reads: dict[str, dict[str, dict[str, Any]]], folder: Path) -> Path:
    readers = [r for r in study.reader_ids if r in reads]
    case_no = {c: n + 1 for n, c in enumerate(study.cases)}
    reader_no = {r: n + 1 for n, r in enumerate(readers)}
    n1 = sum(1 for c in study.cases if key.truth[c] == SYNTHETIC)
    lines = [f"RadSynth reader study {study.study_id} (visual Turing test), signal present = synthetic,",
             "score = +confidence if answered synthetic, -confidence if answered real.", "",
             f"NR: {len(readers)}", f"N0: {len(study.cases) - n1}", f"N1: {n1}", "NM: 1", "", "BEGIN DATA:"]
    lines += [f"-1,{case_no[c]},0,{1 if key.truth[c] == SYNTHETIC else 0}" for c in study.cases]
    for r in readers:
        for c in study.cases:
            if c in reads[r]:
                answers = reads[r][c]["answers"]
                lines.append(f"{reader_no[r]},{case_no[c]},1,{signed_rating(answers['label'], answers['confidence'])}")
    path = folder / "reads.imrmc"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with open(folder / "imrmc_ids.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["kind", "number", "id"])
        writer.writerows([["reader", n, r] for r, n in reader_no.items()])
        writer.writerows([["case", n, c] for c, n in case_no.items()])
    return path
