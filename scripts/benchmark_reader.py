"""Time to show the next case of a reader study in the ReaderStudy logic (slicer-core MRML), for 512×512×100
int16 CT volumes: reading the blinded gzip NRRD, building the volume node, and Next with and without the
background prefetch of the next case (the reader looks at a case for a while; the prefetch uses that time).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/benchmark_reader.py [--cases 6] [--pause 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "ReaderStudy"))
sys.path.insert(0, str(ROOT))

from radsynth import mrml  # noqa: E402
from radsynth.reader.build import CaseInput, build_study  # noqa: E402
from radsynth.sample_data import sample_path  # noqa: E402
from radsynth.volume import Volume, read_volume, write_volume  # noqa: E402


def ct_100(seed: int) -> Volume:
    """512×512×100 int16 from the real sample CTs (lung1 then lung2 slices), shifted so cases differ."""
    a, b = read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung2", "image"))
    stack = np.concatenate([a.array, b.array], axis=0)[:100]
    stack = np.roll(stack, seed * 7, axis=0)
    return Volume(stack.astype(np.int16), a.origin, a.spacing, a.direction)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--pause", type=float, default=2.0, help="seconds a reader looks at a case")
    args = parser.parse_args()
    import slicer
    from ReaderStudyLib.logic import ReaderSession

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        inputs = []
        for n in range(args.cases):
            volume = ct_100(n)
            label = "real" if n % 2 == 0 else "synthetic"
            if label == "synthetic":
                volume = volume.with_array((volume.array.astype(np.float32) + 2.0))
                volume.mark_synthetic("benchmark copy")
            write_volume(volume, tmp / f"in{n}.nrrd")
            inputs.append(CaseInput(tmp / f"in{n}.nrrd", label))
        t = time.perf_counter()
        study = build_study(inputs, tmp / "study", readers=1, seed=0).study
        build_s = time.perf_counter() - t
        size_mb = study.case_path(study.cases[0]).stat().st_size / 1e6
        token = study.readers[0]["token"]

        reads, nodes = [], []
        scene = slicer.vtkMRMLScene()
        for case in study.cases:
            t = time.perf_counter()
            volume = read_volume(study.case_path(case))
            reads.append(time.perf_counter() - t)
            t = time.perf_counter()
            node = mrml.volume_to_node(volume, scene, "Case")
            nodes.append(time.perf_counter() - t)
            mrml.remove_nodes(scene, [node])

        results = {}
        for prefetch in (False, True):
            scene = slicer.vtkMRMLScene()
            session = ReaderSession(study.folder, token, scene, prefetch=prefetch)
            session.show()
            times = []
            while True:
                time.sleep(args.pause)
                session.record({"label": "real", "confidence": 3})
                t = time.perf_counter()
                node = session.next()
                if node is None:
                    break
                times.append(time.perf_counter() - t)
            session.close()
            results[prefetch] = times
            # a fresh study state for the second run
            (study.folder / "responses.sqlite").unlink()
            for extra in ("responses.sqlite-wal", "responses.sqlite-shm"):
                (study.folder / extra).unlink(missing_ok=True)

    print(f"volume 512x512x100 int16, case file {size_mb:.1f} MB (gzip, padded), {args.cases} cases")
    print(f"build study: {build_s:.2f} s ({build_s / args.cases:.2f} s per case)")
    print(f"read case (SimpleITK, gzip NRRD): median {statistics.median(reads):.3f} s, max {max(reads):.3f} s")
    print(f"create volume node (slicer-core): median {statistics.median(nodes):.3f} s, max {max(nodes):.3f} s")
    for prefetch, times in results.items():
        name = "with prefetch" if prefetch else "without prefetch"
        print(f"Next -> case shown, {name}: median {statistics.median(times):.3f} s, max {max(times):.3f} s "
              f"(read + node + preset + shown time saved), {len(times)} transitions")


if __name__ == "__main__":
    main()
