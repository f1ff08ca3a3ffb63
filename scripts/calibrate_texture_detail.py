"""Calibrate TumorSynth's fine-texture stage (radsynth/texture_detail.py) against pyradiomics on its own output.

For lesion-sized sites in aerated lung of the *training* half of the sample CTs (the held-out half is left to
`radsynth evaluate`), the texture model synthesizes a lesion once per site (default steps, default guidance); the
stage then renders every (spread, grain) of the calibration axes on that decoded crop, the result is pasted back
exactly as a synthesis pastes it, and pyradiomics (the project's settings) measures entropy and GLCM contrast on the
final image, over the whole mask and its interior. The table the stage inverts is, per site, the mean of the two,
then the median over sites (``texture_detail.fit_table``); per-site numbers are stored beside it so the fit can be
re-derived.

OMP_NUM_THREADS=1 python scripts/calibrate_texture_detail.py [--sites 3] [--record] [--out out/texture_detail.json]
(about 10 minutes on the shared 2-core VM; --record-only FILE stores an earlier run's output)
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import numpy as np
import torch

from radsynth import texture_detail as td
from radsynth.evaluate.heldout import heldout_regions
from radsynth.evaluate.texture_eval import interior
from radsynth.models import record_in_card
from radsynth.pipelines import tumor
from radsynth.pipelines.loading import load_models, texture_folder
from radsynth.pipelines.texture_fill import complete_texture
from radsynth.progress import StagedProgress
from radsynth.radiomics import _extract, load_preset
from radsynth.region import extract, paste
from radsynth.sample_data import sample_path
from radsynth.volume import read_volume

PRESETS = ("lung1-tumor", "lung2-tumor")
#: sites large enough to keep an interior on 5 mm slices (the evaluation's go down to 10 mm)
DIAMETER_MM = (16.0, 25.0)


def measured(image, mask) -> dict:
    """pyradiomics with the project's settings, only the two classes the table needs (same values, a third of the
    time: the CPU is shared with trainings)."""
    return _extract(("firstorder", "glcm"), image, mask)


def training_half_regions(image, n: int, seed: int) -> list[np.ndarray]:
    """Lesion sites in the half the evaluation never uses: the held-out rule applied to the mirrored image."""
    mirrored = image.with_array(np.ascontiguousarray(image.array[:, :, ::-1]))
    return [np.ascontiguousarray(m[:, :, ::-1]) for m in heldout_regions(mirrored, n, seed, diameter_mm=DIAMETER_MM)]


def measure_site(models, image, mask: np.ndarray, preset: str, seed: int, log) -> dict:
    margin = tumor.MARGIN_MM["synthesize"]
    target, _ = complete_texture(models.normalizer, models.gaussian, load_preset(preset), None)
    region = extract(image, mask, models.spec)
    timer = tumor._Timer(StagedProgress(None, tumor.STAGE_WEIGHTS))
    decoded = tumor._generate(models, region, target, tumor.DEFAULT_GUIDANCE, models.default_steps,
                              float(models.texture_card.get("sampling", {}).get("eta", 1.0)), seed, margin, timer)
    pasted = paste(image, region, decoded, mask, margin_mm=margin, feather_mm=tumor.FEATHER_MM)
    core = interior(mask, np.asarray(image.spacing)[::-1])
    where = {"whole": mask, "interior": core}
    out = {key: {"entropy": [], "contrast": []} for key in td.FIT_ON}
    out.update(voxels=int(mask.sum()), interior_voxels=int(core.sum()), preset=preset)
    for sd in td.SD_AXIS_HU:
        rows = {key: {"entropy": [], "contrast": []} for key in td.FIT_ON}
        for grain in td.GRAIN_AXIS_MM:
            final = td.apply(pasted, mask, td.DetailParams(float(target[td.LEVEL]), sd, grain), margin, seed)
            for key in td.FIT_ON:
                f = measured(final, where[key])
                rows[key]["entropy"].append(round(f[td.SPREAD], 4))
                rows[key]["contrast"].append(round(f[td.GRAIN], 4))
        for key in rows:
            for stat in rows[key]:
                out[key][stat].append(rows[key][stat])
        log(f"  sd {sd:5.0f} HU: " + "; ".join(f"{k} entropy {rows[k]['entropy']} contrast {rows[k]['contrast']}"
                                              for k in td.FIT_ON))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=3, help="training-half sites (alternating lung1 / lung2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("out/texture_detail_calibration.json"))
    ap.add_argument("--record", action="store_true", help="store the table in the texture model's card")
    ap.add_argument("--record-only", type=Path, default=None, metavar="JSON",
                    help="store an earlier run's output (its --out file) in the card without measuring again")
    args = ap.parse_args()
    if args.record_only is not None:
        entry = json.loads(args.record_only.read_text())
        if entry.get("table") != td.fit_table(entry["raw"]):
            raise SystemExit(f"{args.record_only}: its table is not the fit of its measurements")
        record_in_card(texture_folder(args.models), td.CARD_KEY, entry)
        print(f"recorded {args.record_only} in {texture_folder(args.models)}")
        return
    torch.set_flush_denormal(True)
    models = load_models(args.models, device="cpu")
    images = {c: read_volume(sample_path(c, "image")) for c in ("lung1", "lung2")}
    per_case = {c: training_half_regions(images[c], -(-args.sites // 2), args.seed + 7) for c in images}
    sites = [(c, per_case[c][k]) for k in range(-(-args.sites // 2)) for c in images if k < len(per_case[c])]
    sites = sites[:args.sites]
    t0 = time.perf_counter()
    measured = []
    for i, (case, mask) in enumerate(sites):
        preset = PRESETS[i % 2]
        print(f"site {i + 1}/{len(sites)}: {case}, {int(mask.sum())} voxels, {preset}", flush=True)
        measured.append(dict(measure_site(models, images[case], mask, preset, args.seed + i, print), case=case))
    raw = {"sd_hu": list(td.SD_AXIS_HU), "grain_mm": list(td.GRAIN_AXIS_MM), "sites": measured}
    entry = {"table": td.fit_table(raw), "fit_on": list(td.FIT_ON), "raw": raw,
             "measured": "pyradiomics (radiomics_ct.yaml) on the final pasted image; training-half lung sites of "
                         "the sample CTs (0.57-0.63 mm in-plane, 5 mm slices)",
             "models": models.versions, "steps": models.default_steps, "seconds": round(time.perf_counter() - t0),
             "date": datetime.date.today().isoformat(), "by": "scripts/calibrate_texture_detail.py"}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(entry, indent=1) + "\n")
    print(json.dumps(entry["table"]))
    print(f"wrote {args.out} ({entry['seconds']} s)")
    if args.record:
        record_in_card(texture_folder(args.models), td.CARD_KEY, entry)
        print(f"recorded in {texture_folder(args.models)}")


if __name__ == "__main__":
    main()
