#!/usr/bin/env python
"""Bounded load test of the web reader on 127.0.0.1: N concurrent readers each read every case once.

Builds a study of 512×512×100 CT volumes (the sample chest CT lung1 stacked to 100 slices as the real cases,
smoothed copies marked synthetic as the synthetic ones), starts ``radsynth reader serve`` in its own process, and
runs one thread per reader with urllib: open the case, fetch ``--slices`` slices, answer, next. Prints requests/s,
the error count, p50/p95 latency per request kind and the next-case latency (answer sent → next case's metadata
and middle slice received), and with ``--browser`` the time Chromium takes from "Save and next" to the next image
on screen. Every loop is bounded by the number of cases; nothing listens beyond 127.0.0.1.

    .venv/bin/python scripts/load_reader.py [--readers 10] [--cases 4] [--slices 20] [--browser]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np


def build(folder: Path, n_cases: int, readers: int, depth: int) -> Path:
    from scipy import ndimage

    from radsynth.reader.build import CaseInput, build_study
    from radsynth.sample_data import sample_path
    from radsynth.volume import read_volume, write_volume

    ct = read_volume(sample_path("lung1", "image"))
    reps = -(-depth // ct.shape[0])
    inputs = []
    for n in range(n_cases):
        # each case a different stack of the sample's slices, so cases differ
        array = np.roll(np.concatenate([ct.array] * reps), -7 * n, axis=0)[:depth]
        volume = ct.with_array(array.astype(np.int16))
        volume.metadata = {}
        if n % 2:
            volume = volume.with_array(ndimage.uniform_filter(array.astype(np.float32), 2) + 3.0)
            volume.mark_synthetic("load test smoothing")
        path = folder / "inputs" / f"case{n}.nrrd"
        write_volume(volume, path)
        inputs.append(CaseInput(path, "synthetic" if n % 2 else "real"))
    return build_study(inputs, folder / "study", readers=readers, seed=1).study.folder


def start_server(study: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    code = ("import sys; from radsynth.cli.reader_serve import serve; "
            "serve(sys.argv[1], port=0, echo=lambda s: print(s, flush=True))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(study)], stdout=subprocess.PIPE, text=True)
    links: dict[str, str] = {}
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("  R"):
            reader, link = line.strip().split(": ", 1)
            links[reader] = link
        if line.startswith("Give each reader"):
            return proc, links
    proc.kill()
    raise SystemExit("the reader server did not start")


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.times: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []

    def call(self, kind: str, url: str, payload=None) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=60) as response:
                body = response.read()
        except (urllib.error.URLError, OSError) as exc:
            with self.lock:
                self.errors.append(f"{kind}: {exc}")
            return b""
        with self.lock:
            self.times[kind].append(time.perf_counter() - started)
        return body


def read_all(link: str, rec: Recorder, slices: int, next_times: list[float]) -> None:
    state = json.loads(rec.call("state", f"{link}/api/state") or b"{}")
    for position in range(state.get("total", 0)):
        started = time.perf_counter()
        kind = "case" if position else "case-1st"   # the first one may still be loading as the server starts
        info = json.loads(rec.call(kind, f"{link}/api/case/{position}") or b"{}")
        if not info:
            return
        n = info["slices"]
        rec.call("slice", f"{link}/api/case/{position}/slice/{n // 2}")
        if position > 0:
            next_times.append(time.perf_counter() - started + answered)
        for k in np.linspace(0, n - 1, slices).astype(int):
            rec.call("slice", f"{link}/api/case/{position}/slice/{k}")
        time.sleep(0.5)   # a reader looks at the case for a moment: the server prefetches the next one meanwhile
        t = time.perf_counter()
        rec.call("answer", f"{link}/api/case/{position}/answer", {"label": "real", "confidence": 3})
        answered = time.perf_counter() - t


def browser_next_case(link: str, cases: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = browser.new_page()
        page.goto(link)
        for position in range(cases - 1):
            page.wait_for_selector(f"body[data-shown='{position}']", timeout=60000)
            page.wait_for_timeout(1000)
            page.check("fieldset[data-question='label'] input[value='real']")
            page.check("fieldset[data-question='confidence'] input[value='3']")
            # timed inside the page (performance.now at the click and when the next image is drawn): what the
            # reader waits for, without the test driver's own polling
            clicked = page.evaluate("() => { const t = performance.now(); "
                                    "document.getElementById('save').click(); return t; }")
            page.wait_for_selector(f"body[data-shown='{position + 1}']", timeout=60000)
            out.append((float(page.evaluate("document.body.dataset.shownAt")) - clicked) / 1000)
        browser.close()
    return out


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, default=10)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--slices", type=int, default=20, help="slices each reader fetches per case")
    parser.add_argument("--depth", type=int, default=100, help="slices per volume")
    parser.add_argument("--browser", action="store_true", help="also time Next in Chromium (one more reader)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        study = build(Path(tmp), args.cases, args.readers + 1, args.depth)
        print(f"study: {args.cases} cases of 512x512x{args.depth}, built in {time.perf_counter() - t:.1f} s")
        proc, links = start_server(study)
        try:
            rec, next_times = Recorder(), []
            threads = [threading.Thread(target=read_all, args=(links[f"R{i + 1}"], rec, args.slices, next_times))
                       for i in range(args.readers)]
            t = time.perf_counter()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=600)
            wall = time.perf_counter() - t
            total = sum(len(v) for v in rec.times.values())
            print(f"{args.readers} concurrent readers: {total} requests in {wall:.1f} s "
                  f"(incl. 0.5 s looking per case) = {total / wall:.1f} requests/s, errors: {len(rec.errors)}")
            for kind in ("state", "case-1st", "case", "slice", "answer"):
                v = rec.times.get(kind, [])
                print(f"  {kind:8s} n={len(v):5d}  p50 {pct(v, 50):7.1f} ms  p95 {pct(v, 95):7.1f} ms")
            print(f"  next case (answer → metadata + middle slice): p50 {pct(next_times, 50):.0f} ms, "
                  f"p95 {pct(next_times, 95):.0f} ms, max {max(next_times) * 1000:.0f} ms")
            for error in rec.errors[:5]:
                print("  error:", error)
            if args.browser:
                shown = browser_next_case(links[f"R{args.readers + 1}"], args.cases)
                print(f"  Chromium, 'Save and next' → next 512×512 image drawn (in page): "
                      + ", ".join(f"{s * 1000:.0f}" for s in shown) + " ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    if rec.errors:
        sys.exit(1)


if __name__ == "__main__":
    main()
