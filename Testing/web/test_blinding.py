"""Blinding on the wire: from every HTTP response a reader receives, labels cannot be recovered better than chance.

The study's synthetic inputs are smoothed and marked, the real ones noisy, so their voxels compress differently and
decode at different speeds: a server that compressed slices, passed a mark through, or took longer for one kind
would leak. The same attack run against deliberately leaky servers shows it finds exactly those leaks.
"""

from __future__ import annotations

import gzip
import time

import pytest

from blinding_probe import forbidden_strings, leaks, read_everything
from radsynth.web.server import Handler
from radsynth.web.session import DEFAULT_OPEN_FLOOR_S, ReaderSessions

N_EACH = 8


def answer(position: int) -> dict:
    return {"label": "real" if position % 2 else "synthetic", "confidence": 1 + position % 5}


@pytest.fixture
def built(study_factory):
    """A fresh study per test: the reader's earlier answers would show in the case replies of a second pass."""
    return study_factory(n_real=N_EACH, n_synthetic=N_EACH, readers=2, seed=3, shape=(10, 40, 40))


def truth_at(built, reader_id="R1") -> dict[int, str]:
    return {p: built.truth[c] for p, c in enumerate(built.study.order(reader_id))}


def observe(built, serve, **options):
    server = serve(built, **options)
    return read_everything(built.link(server, "R1"), 2 * N_EACH, answer)


def test_no_response_tells_real_from_synthetic(built, serve):
    # the product's settings: the floor on opening a case is the default one
    observed = observe(built, serve, open_floor_s=DEFAULT_OPEN_FLOOR_S)
    assert leaks(observed, truth_at(built)) == []
    sources = [c for c in built.study.cases] + [r["token"] for r in built.study.readers if r["reader_id"] != "R1"]
    sources += ["patient0", "synthetic.nrrd", ".nrrd", "radsynth.synthetic", "provenance", "toy generator",
                "last-modified", "etag", "content-encoding", str(built.study.folder)]
    assert forbidden_strings(observed, sources) == []
    # every slice response has the same headers (but the date) and the same size, for every case
    slices = [r for url, r in observed.responses if "/slice/" in url]
    assert len({len(r.body) for r in slices}) == 1
    assert len({tuple((k, v) for k, v in r.headers if k != "Date") for r in slices}) == 1


class GzipSlices(Handler):
    """A plausible mistake: compressing slices to save bandwidth (compressed size follows image content)."""

    def _send(self, status, body, content_type):
        if content_type == "application/octet-stream":
            body = gzip.compress(body)
        super()._send(status, body, content_type)


def leaky_sessions(truth: dict[str, str], mode: str):
    class Leaky(ReaderSessions):
        def open_case(self, reader_id, position):
            info = super().open_case(reader_id, position)
            if mode == "mark":   # as if the stripped header mark had been passed on as metadata
                info["meta"] = {"RadSynth.Synthetic": "1"} if truth[self._orders[reader_id][position]] == "synthetic" \
                    else {}
            return info

        def slice(self, reader_id, position, k):
            if mode == "slow" and truth[self._orders[reader_id][position]] == "synthetic":
                time.sleep(0.05)   # as if synthetic cases were decoded on every request
            return super().slice(reader_id, position, k)
    return Leaky


@pytest.mark.parametrize("mode, expected", [("gzip", "slice:total-size"), ("mark", "case:json"),
                                            ("slow", "slice:mean-time")])
def test_the_attack_finds_a_leak(built, serve, mode, expected):
    options = {"handler": GzipSlices} if mode == "gzip" else {"sessions_cls": leaky_sessions(built.truth, mode)}
    found = {v.feature for v in leaks(observe(built, serve, **options), truth_at(built))}
    assert expected in found, found
