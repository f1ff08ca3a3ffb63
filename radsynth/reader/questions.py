"""The questions of a study and the check that an answer fits them.

Every study asks the forced choice (real / synthetic) and a 1–5 confidence; Likert items and a free comment are
optional. Scale items are required in every answer, the comment is not: analysis needs complete ratings.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from .errors import StudyError

LABEL, CONFIDENCE, COMMENT = "label", "confidence", "comment"
REAL, SYNTHETIC = "real", "synthetic"
LABELS = (REAL, SYNTHETIC)
MAX_COMMENT = 10_000

#: wording for the Likert items named in the issue; any other id is asked with its own name
LIKERT_TEXT = {
    "realism": "How realistic does this image look? (1 = clearly artificial, 5 = indistinguishable from a real scan)",
    "continuity": "How continuous is the anatomy across slices in 3D? (1 = broken, 5 = seamless)",
    "conspicuity": "How conspicuous is the lesion? (1 = barely visible, 5 = obvious)",
}


def make_questions(likert: Iterable[str] = (), comment: bool = True) -> list[dict[str, Any]]:
    questions: list[dict[str, Any]] = [
        {"id": LABEL, "kind": "choice", "choices": list(LABELS),
         "text": "Is this scan real or synthetic?"},
        {"id": CONFIDENCE, "kind": "scale", "min": 1, "max": 5,
         "text": "How confident are you? (1 = guessing, 5 = certain)"},
    ]
    seen = {LABEL, CONFIDENCE, COMMENT}
    for item in likert:
        item = item.strip()
        if not item:
            continue
        if not item.replace("_", "").replace("-", "").isalnum():
            raise StudyError(f"Likert item {item!r}: use letters, digits, '-' or '_' only (e.g. realism).")
        if item in seen:
            raise StudyError(f"Likert item {item!r} is given twice or clashes with a built-in question.")
        seen.add(item)
        questions.append({"id": item, "kind": "scale", "min": 1, "max": 5,
                          "text": LIKERT_TEXT.get(item, f"Rate {item.replace('_', ' ')} (1 = worst, 5 = best)")})
    if comment:
        questions.append({"id": COMMENT, "kind": "text", "text": "Comment (optional)"})
    return questions


def check_questions(questions: Any) -> list[dict[str, Any]]:
    """Refuse a question list that a study.json cannot have come from the builder with."""
    if not isinstance(questions, list) or len(questions) < 2:
        raise StudyError("study.json: 'questions' must list at least the label and confidence questions.")
    ids = [q.get("id") if isinstance(q, dict) else None for q in questions]
    if ids[:2] != [LABEL, CONFIDENCE] or len(set(ids)) != len(ids):
        raise StudyError("study.json: the questions must start with 'label' and 'confidence' and have unique ids.")
    for q in questions:
        if q.get("kind") == "scale":
            if not (isinstance(q.get("min"), int) and isinstance(q.get("max"), int) and q["min"] < q["max"]):
                raise StudyError(f"study.json: scale question {q['id']!r} needs integer min < max.")
        elif q.get("kind") == "choice":
            if not isinstance(q.get("choices"), list) or not q["choices"]:
                raise StudyError(f"study.json: choice question {q['id']!r} needs choices.")
        elif q.get("kind") != "text":
            raise StudyError(f"study.json: question {q.get('id')!r} has unknown kind {q.get('kind')!r}.")
    if questions[0]["choices"] != list(LABELS):
        raise StudyError("study.json: the label question must offer exactly 'real' and 'synthetic'.")
    return questions


def validate_answers(questions: list[dict[str, Any]], answers: Any) -> dict[str, Any]:
    """The answer as it will be stored (canonical types), or StudyError naming what does not fit."""
    if not isinstance(answers, dict):
        raise StudyError("An answer must be a set of named values (a JSON object).")
    known = {q["id"]: q for q in questions}
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise StudyError(f"This study does not ask {', '.join(map(repr, unknown))}.")
    out: dict[str, Any] = {}
    for qid, q in known.items():
        value = answers.get(qid)
        if q["kind"] == "text":
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise StudyError(f"'{qid}' must be text.")
            if len(value) > MAX_COMMENT:
                raise StudyError(f"'{qid}' is longer than {MAX_COMMENT} characters.")
            out[qid] = value
        elif q["kind"] == "choice":
            if value not in q["choices"]:
                raise StudyError(f"Answer '{qid}' with one of {', '.join(q['choices'])} (got {value!r}).")
            out[qid] = value
        else:
            number = _as_int(value)
            if number is None or not q["min"] <= number <= q["max"]:
                raise StudyError(f"Answer '{qid}' with a whole number from {q['min']} to {q['max']} "
                                 f"(got {value!r}).")
            out[qid] = number
    return out


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None
