"""radsynth.train.volume on a tiny synthetic training folder (TotalSegmentator layout): both stages train, the model
folder loads and generates, and --resume continues from the checkpointed step with the optimizer's state."""

import json

import numpy as np
import pytest
import torch

from radsynth import models
from radsynth.train import volume as tv
from radsynth.volume import Volume, write_volume


def _phantom(seed: int) -> Volume:
    """A chest-like CT: air, an elliptic body of soft tissue, two aerated lungs, a spine."""
    rng = np.random.default_rng(seed)
    k, j, i = np.mgrid[0:40, 0:64, 0:64].astype(np.float32)
    body = ((i - 32) / 26) ** 2 + ((j - 32) / 18) ** 2 < 1
    lungs = [((i - c) / 9) ** 2 + ((j - 30) / 11) ** 2 + ((k - 20) / 24) ** 2 < 1 for c in (20, 44)]
    hu = np.full(body.shape, -1000.0, np.float32)
    hu[body] = 40
    for lung in lungs:
        hu[lung & body] = -850
    hu[(((i - 32) / 4) ** 2 + ((j - 46) / 4) ** 2 < 1)] = 500
    hu += rng.normal(0, 10, hu.shape).astype(np.float32)
    return Volume(hu.astype(np.int16), (-189.0, -189.0, -117.0), (6.0, 6.0, 6.0),
                  (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("totalseg")
    for n in range(2):
        (root / f"s000{n}").mkdir()
        write_volume(_phantom(n), root / f"s000{n}" / "ct.nii.gz")
    return root


ARGS = ["--size", "32", "32", "32", "--spacing", "8", "8", "8", "--ae-crop", "16", "--batch", "1",
        "--diffusion-batch", "2", "--checkpoint-every", "1", "--lr", "1e-3"]


def test_train_resume_and_generate(folder, tmp_path):
    torch.set_num_threads(1)
    out, work = tmp_path / "model", tmp_path / "work"
    tv.main(["--data", str(folder), "--out", str(out), "--work", str(work), "--ae-steps", "2",
             "--diffusion-steps", "2", *ARGS])
    card = models.read_card(out)
    assert card["kind"] == "volume-ldm" and card["demo"] is False
    assert card["training"]["autoencoder"]["steps"] == 2 and card["training"]["diffusion"]["steps"] == 2
    assert card["latent"]["scale_factor"] > 0 and card["latent"]["downsample"] == 4
    assert card["conditioning"]["mask_channels"]["labels"] == ["body", "lung"]
    assert card["grid"]["default_size"] == [32, 32, 32]
    first = torch.load(work / "diffusion.ckpt", weights_only=True)
    assert first["step"] == 2

    # resume: both stages continue from their checkpoints (step count, optimizer moments), not from scratch
    tv.main(["--data", str(folder), "--out", str(out), "--work", str(work), "--ae-steps", "3",
             "--diffusion-steps", "4", "--resume", *ARGS])
    card = models.read_card(out)
    ae, diff = card["training"]["autoencoder"], card["training"]["diffusion"]
    assert (ae["steps"], ae["steps_this_run"]) == (3, 1)
    assert (diff["steps"], diff["steps_this_run"]) == (4, 2)
    resumed = torch.load(work / "diffusion.ckpt", weights_only=True)
    adam_steps = {float(s["step"]) for s in resumed["opt"]["state"].values()}
    assert adam_steps == {4.0}                     # AdamW's own step counter carried on from 2
    assert len(resumed["losses"]) == 4 and resumed["losses"][:2] == first["losses"]

    loaded = models.load("volume-ldm", out, "cpu")
    from radsynth.pipelines.generate.whole_volume import generate
    result = generate(loaded, steps=2, seed=3)
    assert result.volume.shape == (32, 32, 32) and result.volume.spacing == (8.0, 8.0, 8.0)
    assert result.volume.is_synthetic


def test_crops_are_the_same_for_an_index_whatever_the_rank(folder):
    cases = [(np.random.default_rng(0).random((1, 20, 20, 20), dtype=np.float32),
              np.zeros((2, 20, 20, 20), np.float32))]
    a, b = tv.CropDataset(cases, (8, 8, 8), 10, seed=1), tv.CropDataset(cases, (8, 8, 8), 10, seed=1)
    a.set_epoch(3)
    b.set_epoch(3)
    assert torch.equal(a[5][0], b[5][0])
    b.set_epoch(4)
    assert not torch.equal(a[5][0], b[5][0])
    assert a[5][0].shape == (1, 8, 8, 8) and a[5][1].shape == (2, 8, 8, 8)


def test_the_found_layouts(folder, tmp_path):
    assert [p.parent.name for p in tv.find_cases(folder)] == ["s0000", "s0001"]
    msd = tmp_path / "Task07_Pancreas"
    (msd / "imagesTr").mkdir(parents=True)
    write_volume(_phantom(0), msd / "imagesTr" / "pancreas_001.nii.gz")
    assert [p.name for p in tv.find_cases(msd)] == ["pancreas_001.nii.gz"]
    image, maps = tv.prepare_case(msd / "imagesTr" / "pancreas_001.nii.gz", (32, 32, 32), (8, 8, 8))
    assert image.shape == (1, 48, 48, 48) and maps.shape == (2, 48, 48, 48)
    assert 0 <= image.min() and image.max() <= 1
    body, lung = maps[0] > 0.5, maps[1] > 0.5
    assert body.sum() > lung.sum() > 0 and not (lung & ~body).any()
    # the maps were read from the CT: lung voxels are dark, body voxels outside the lungs are soft tissue
    hu = image[0] * 2000 - 1000
    assert np.median(hu[lung]) < -600 and abs(np.median(hu[body & ~lung])) < 150
    assert json.dumps(tv.architecture("demo"))   # the config is plain JSON (it goes into the card)
