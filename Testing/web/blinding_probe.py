"""An adversary with only what a reader's browser receives: every HTTP response (status, headers, body, size,
timing), grouped by case position. It tries to recover the labels with leave-one-out classifiers on each feature;
a feature "leaks" when its accuracy beats chance at p < 0.001 (one-sided binomial test)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import numpy as np
from scipy.stats import binomtest

from web_support import Reply, request

ALPHA = 1e-3
VOLATILE_HEADERS = {"date"}   # wall-clock time, the same for every case


@dataclass
class Observed:
    """Every response a reader received, and the per-case part of it."""
    responses: list[tuple[str, Reply]] = field(default_factory=list)        # (url, reply), all of them
    per_case: dict[int, list[tuple[str, Reply]]] = field(default_factory=lambda: defaultdict(list))


def read_everything(link: str, total: int, answer: Callable[[int], dict], slices: Optional[int] = None) -> Observed:
    """Read every case the way the page does: page, assets, state, then per case open, all slices, answer."""
    seen = Observed()

    def get(url: str, position: Optional[int] = None, kind: str = "", payload=None) -> Reply:
        reply = request(url, payload)
        seen.responses.append((url, reply))
        if position is not None:
            seen.per_case[position].append((kind, reply))
        return reply

    root = link.split("/r/")[0]
    for url in (link, f"{root}/static/reader.js", f"{root}/static/reader.css", f"{link}/api/state"):
        assert get(url).status == 200
    for position in range(total):
        info = get(f"{link}/api/case/{position}", position, "case")
        assert info.status == 200, info.body
        count = info.json()["slices"] if slices is None else slices
        for k in range(count):
            assert get(f"{link}/api/case/{position}/slice/{k}", position, "slice").status == 200
        assert get(f"{link}/api/case/{position}/answer", position, "answer", answer(position)).status == 200
    return seen


def features(observed: Observed) -> dict[str, dict[int, Any]]:
    """feature name -> {position: value}; categorical values are hashable, timings are floats."""
    out: dict[str, dict[int, Any]] = defaultdict(dict)
    for position, replies in observed.per_case.items():
        by_kind: dict[str, list[Reply]] = defaultdict(list)
        for kind, reply in replies:
            by_kind[kind].append(reply)
        for kind, group in by_kind.items():
            out[f"{kind}:status"][position] = tuple(r.status for r in group)
            out[f"{kind}:headers"][position] = frozenset(
                (k.lower(), v) for r in group for k, v in r.headers if k.lower() not in VOLATILE_HEADERS)
            out[f"{kind}:header-names"][position] = tuple(tuple(k.lower() for k, _ in r.headers) for r in group)
            out[f"{kind}:sizes"][position] = tuple(sorted(len(r.body) for r in group))
            out[f"{kind}:total-size"][position] = float(sum(len(r.body) for r in group))
            out[f"{kind}:mean-time"][position] = float(np.mean([r.elapsed for r in group]))
            out[f"{kind}:max-time"][position] = float(np.max([r.elapsed for r in group]))
            if kind != "slice":
                out[f"{kind}:json"][position] = tuple(_json_without_position(r.body) for r in group)
    return out


def _json_without_position(body: bytes) -> str:
    try:
        value = json.loads(body)
    except ValueError:
        return body.decode("latin-1")
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "position"}
    return json.dumps(value, sort_keys=True)


def loo_categorical(values: list[Any], labels: list[str]) -> int:
    """Leave-one-out: predict the majority label among the other cases with the same value."""
    correct = 0
    for i, (value, label) in enumerate(zip(values, labels)):
        votes = Counter(lab for j, (v, lab) in enumerate(zip(values, labels)) if j != i and v == value)
        if not votes:
            votes = Counter(lab for j, lab in enumerate(labels) if j != i)
        ranked = votes.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            continue  # a tie is no prediction: counted wrong
        correct += ranked[0][0] == label
    return correct


def loo_threshold(values: list[float], labels: list[str]) -> int:
    """Leave-one-out: the best single threshold (either direction) fitted on the other cases."""
    x = np.asarray(values, float)
    y = np.asarray([lab == "synthetic" for lab in labels])
    correct = 0
    for i in range(len(x)):
        keep = np.arange(len(x)) != i
        xs, ys = x[keep], y[keep]
        order = np.unique(xs)
        cuts = np.concatenate([[order[0] - 1], (order[:-1] + order[1:]) / 2, [order[-1] + 1]])
        best, best_acc = None, -1.0
        for cut in cuts:
            for sign in (1, -1):
                acc = np.mean(((sign * (xs - cut)) > 0) == ys)
                if acc > best_acc:
                    best, best_acc = (cut, sign), acc
        cut, sign = best
        correct += ((sign * (x[i] - cut)) > 0) == y[i]
    return correct


@dataclass
class Verdict:
    feature: str
    correct: int
    n: int
    p: float


def attack(observed: Observed, truth_at: dict[int, str]) -> list[Verdict]:
    verdicts = []
    positions = sorted(truth_at)
    labels = [truth_at[p] for p in positions]
    for name, by_position in sorted(features(observed).items()):
        values = [by_position[p] for p in positions]
        numeric = all(isinstance(v, float) for v in values)
        correct = loo_threshold(values, labels) if numeric else loo_categorical(values, labels)
        p = binomtest(correct, len(labels), 0.5, alternative="greater").pvalue
        verdicts.append(Verdict(name, correct, len(labels), p))
    return verdicts


def leaks(observed: Observed, truth_at: dict[int, str]) -> list[Verdict]:
    return [v for v in attack(observed, truth_at) if v.p < ALPHA]


def forbidden_strings(observed: Observed, needles: Iterable[str]) -> list[tuple[str, str]]:
    """(url, needle) for each response whose URL, headers or body holds a needle (case ids, file names...)."""
    found = []
    for url, reply in observed.responses:
        haystack = (url + "\n" + "\n".join(f"{k}: {v}" for k, v in reply.headers)).encode() + b"\n" + reply.body
        for needle in needles:
            if needle.encode().lower() in haystack.lower():
                found.append((url, needle))
    return found
