"""Whole-volume latent generation on tiny MAISI-architecture networks (random weights): latent scaling, tiled
decoding against whole decoding, determinism, output geometry in HU, request and memory checks before any work,
samplers, progress and cancel, ControlNet conditioning."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from maisi_support import wake
from torch import nn

from radsynth.errors import CancelledError, InvalidOptionError
from radsynth.nets import maisi
from radsynth.pipelines.generate import latent
from radsynth.nets import maisi_config as mc
from radsynth.progress import CancelToken

torch.set_flush_denormal(True)
GRID = {"orientation": "RAS", "spacing_range_mm": [[0.5, 5.0]] * 3, "default_size": [32, 32, 32],
        "default_spacing_mm": [2.0, 2.0, 3.0]}


def _card(arch: dict, scale_factor: float = 1.0, **changes) -> dict:
    sched = mc.scheduler_spec(arch["noise_scheduler"])
    unet = arch["diffusion_unet_def"]
    card = {"name": "tiny", "version": "1", "kind": maisi.KINDS[sched["type"]], "architecture": arch,
            "networks": ["autoencoder", "diffusion", "controlnet"],
            "latent": {"scale_factor": scale_factor, "channels": 4, "downsample": 4}, "scheduler": sched,
            "sampling": {"sampler": "rflow" if sched["type"] == "rflow" else "ddpm", "default_steps": 3,
                         "decode_overlap": 0.5},
            "intensity": dict(mc.MAISI_CT_INTENSITY),
            "conditioning": {"spacing": True, "body_region": bool(unet.get("include_top_region_index_input")),
                             "class_label": 1 if unet.get("num_class_embeds") else None, "mask": True},
            "grid": dict(GRID)}
    card.update(changes)
    return card


def _model(scheduler: str = "rflow", scale_factor: float = 1.0, seed: int = 0, **changes) -> maisi.MaisiNetworks:
    arch = mc.parse_network_config(mc.example_config("tiny", scheduler))
    torch.manual_seed(seed)
    nets = {p: maisi.build_network(p, arch[mc.PARTS[p][0]]).eval() for p in ("autoencoder", "diffusion",
                                                                              "controlnet")}
    wake(nets)
    return maisi.MaisiNetworks(nets["autoencoder"], nets["diffusion"], nets["controlnet"],
                               _card(arch, scale_factor, **changes), torch.device("cpu"))


@pytest.fixture(scope="module")
def model():
    return _model()


class _Counting(nn.Module):
    """Wraps a network and counts its calls (to show that refused requests did no work)."""

    def __init__(self, net: nn.Module, zero: bool = False):
        super().__init__()
        self.net, self.zero, self.calls = net, zero, 0

    def forward(self, x, **kw):
        self.calls += 1
        out = self.net(x, **kw)
        return torch.zeros_like(out) if self.zero else out


def _with(model, **parts):
    return maisi.MaisiNetworks(parts.get("autoencoder", model.autoencoder), parts.get("diffusion", model.diffusion),
                               parts.get("controlnet", model.controlnet), dict(model.card), model.device)


# ------------------------------------------------------------------------------------------------- latent scale

def test_latent_scale_round_trip():
    z = torch.randn(1, 4, 6, 6, 6) * 3.0 + 0.5
    factor = latent.scale_factor_for(z)
    assert factor == pytest.approx(1 / 3.0, rel=0.05)
    scaled = latent.scale_latent(z, factor)
    assert float(scaled.std()) == pytest.approx(1.0, rel=1e-5)            # unit variance for the diffusion model
    assert torch.allclose(latent.unscale_latent(scaled, factor), z, atol=1e-6)


def test_decoding_undoes_the_card_scale_factor(model):
    scaled = _with(model)
    scaled.card["latent"] = dict(model.card["latent"], scale_factor=2.5)
    z = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        expected = model.autoencoder.decode_stage_2_outputs(z)
    got = latent.decode_latent(scaled, latent.scale_latent(z, 2.5))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(latent.decode_latent(scaled, z), expected, atol=1e-2)


def test_the_sampler_output_is_unscaled_before_decoding(model):
    """A UNet predicting zero velocity leaves RFlow's initial noise unchanged, so the volume must be the decoding of
    noise / scale_factor (seed 003's bundle decoded the noise itself)."""
    still = _with(model, diffusion=_Counting(model.diffusion, zero=True))
    still.card["latent"] = dict(model.card["latent"], scale_factor=4.0)
    result = latent.generate_volume(still, seed=7, steps=2)
    noise = latent.initial_noise((1, 4, 8, 8, 8), 7, torch.device("cpu"))
    with torch.no_grad():
        right = model.autoencoder.decode_stage_2_outputs(noise / 4.0)[0, 0].numpy()
        wrong = model.autoencoder.decode_stage_2_outputs(noise)[0, 0].numpy()
    got = result.volume.array.transpose(2, 1, 0)
    assert np.abs(got.astype(float) - latent.to_hu(right, model.card["intensity"])).max() <= 1
    assert np.abs(got.astype(float) - latent.to_hu(wrong, model.card["intensity"])).mean() > 20


# --------------------------------------------------------------------------------------------- tiled decoding

class _LocalDecoder(nn.Module):
    """A decoder without normalisation: each output voxel depends on latents within ~2 voxels."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv3d(4, 8, 3, padding=1), nn.SiLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv3d(8, 8, 3, padding=1), nn.SiLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv3d(8, 1, 3, padding=1))

    def decode_stage_2_outputs(self, z):
        return self.net(z)


def test_tiled_decoding_equals_whole_decoding_for_a_local_decoder(model):
    """Where windows overlap (50 % of 12 latent voxels) each output voxel is a Gaussian-weighted mean of the
    windows holding it; a window's zero-padded border (wrong within the decoder's reach of ~2 latent voxels) has
    weight exp(-8) ≈ 3e-4 of its centre, so the blend equals the whole decoding to ~2 % of the output's spread at
    worst, 0.1 % on average. (MONAI's own clamped weight map gives errors above 200 % of it on the volume faces.)"""
    torch.manual_seed(1)
    local = _with(model, autoencoder=_LocalDecoder().eval())
    z = torch.randn(1, 4, 16, 16, 16)
    whole = latent.decode_latent(local, z)
    tiled = latent.decode_latent(local, z, tile=(12, 12, 12), overlap=0.5)
    assert tiled.shape == whole.shape == (1, 1, 64, 64, 64)
    err = (tiled - whole).abs() / whole.std()
    assert float(err.max()) < 0.05 and float(err.mean()) < 0.002, (float(err.max()), float(err.mean()))


def test_tiled_decoding_is_close_to_whole_decoding_for_the_maisi_decoder(model):
    """The MAISI decoder's group norms use each window's statistics, so tiles differ from the whole decoding by
    more than border effects: with random weights (the worst case: no smoothness learned) the blended result stays
    within 12 % of the output's spread on average and correlates above 0.99 with it, while another latent's
    decoding differs by ~100 %."""
    torch.manual_seed(2)
    z = torch.randn(1, 4, 16, 16, 16)
    whole = latent.decode_latent(model, z)
    tiled = latent.decode_latent(model, z, tile=(12, 12, 12), overlap=0.5)
    spread = whole.std()
    assert float((tiled - whole).abs().mean() / spread) < 0.12
    assert float(torch.corrcoef(torch.stack([tiled.flatten(), whole.flatten()]))[0, 1]) > 0.99
    other = latent.decode_latent(model, torch.randn(1, 4, 16, 16, 16))
    assert float((other - whole).abs().mean() / spread) > 0.5
    same = latent.decode_latent(model, z, tile=(16, 16, 16))      # a window covering the latent: whole decoding
    assert torch.equal(same, whole)


def test_blend_weights_are_separable_gaussians_without_a_floor():
    w = latent.blend_weights((8, 16, 32))
    assert w.shape == (1, 1, 8, 16, 32)
    g = [latent.blend_weights((n,))[0, 0] for n in (8, 16, 32)]
    assert torch.allclose(w[0, 0], g[0][:, None, None] * g[1][None, :, None] * g[2][None, None, :], rtol=1e-5)
    # no floor: a corner keeps the product of the axes' edge weights (MONAI clamps its map at 1e-3)
    assert float(w.min()) == pytest.approx(float(g[0][0] * g[1][0] * g[2][0]), rel=1e-4) and float(w.min()) < 1e-6
    assert float(w.max()) == pytest.approx(float(w[0, 0, 3, 7, 15]))


def test_maisi_split_convolutions_are_exact(model):
    """MAISI's own memory saver (num_splits) splits convolutions with overlapping halos: exact, unlike tiling."""
    arch = model.card["architecture"]
    one = maisi.build_network("autoencoder", arch["autoencoder_def"], num_splits=1).eval()
    one.load_state_dict(model.autoencoder.state_dict())
    z = torch.randn(1, 4, 8, 8, 8)
    with torch.no_grad():
        assert torch.allclose(one.decode_stage_2_outputs(z), model.autoencoder.decode_stage_2_outputs(z),
                              atol=1e-5)


# -------------------------------------------------------------------------------------- determinism, geometry

def test_same_seed_same_volume_on_cpu(model):
    a = latent.generate_volume(model, seed=11)
    b = latent.generate_volume(model, seed=11)
    c = latent.generate_volume(model, seed=12)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert not np.array_equal(a.volume.array, c.volume.array)


def test_output_is_hu_on_the_requested_grid(model):
    result = latent.generate_volume(model, (64, 32, 96), (1.5, 1.25, 2.5), seed=3)
    vol = result.volume
    assert result.mask is None
    assert vol.array.shape == (96, 32, 64) and vol.array.dtype == np.int16          # (k, j, i) = (z, y, x)
    assert vol.spacing == (1.5, 1.25, 2.5)
    assert vol.direction == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)          # RAS axes in LPS
    assert np.allclose(vol.index_to_physical(np.array([[47.5, 15.5, 31.5]]))[0], 0.0, atol=1e-6)
    step_i = vol.index_to_physical(np.array([[0, 0, 1]]))[0] - vol.index_to_physical(np.array([[0, 0, 0]]))[0]
    assert np.allclose(step_i, [-1.5, 0, 0])       # x runs to the patient's right: -L in LPS
    assert -1000 <= vol.array.min() and vol.array.max() <= 1000
    assert vol.is_synthetic and "tiny 1" in vol.metadata["RadSynth.Provenance"]
    assert result.settings["fov_mm"] == [96.0, 40.0, 240.0]
    assert result.settings["size"] == [64, 32, 96] and result.settings["spacing_mm"] == [1.5, 1.25, 2.5]


def test_hu_mapping_inverts_the_card_window():
    hu = latent.to_hu(np.array([-0.5, 0.0, 0.25, 0.5, 1.0, 1.7]), mc.MAISI_CT_INTENSITY)
    assert hu.tolist() == [-1000, -1000, -500, 0, 1000, 1000] and hu.dtype == np.int16
    unclipped = latent.to_hu(np.array([1.5]), dict(mc.MAISI_CT_INTENSITY, clip=False))
    assert unclipped.tolist() == [2000]


# --------------------------------------------------------------------------------------------- request checks

@pytest.mark.parametrize("size, spacing, says", [
    ((33, 32, 32), (1, 1, 1), "multiple of 32"),
    ((32, 32, 32), (0.2, 1, 1), "between 0.5 and 5 mm"),
    ((32, 32), (1, 1, 1), "three numbers"),
    ((32, 32, -32), (1, 1, 1), "whole numbers"),
    ((32, 32, 32), (1, float("nan"), 1), "finite"),
])
def test_unsupported_requests_are_refused_before_any_work(model, size, spacing, says):
    counting = _with(model, diffusion=_Counting(model.diffusion))
    with pytest.raises(InvalidOptionError, match=says):
        latent.generate_volume(counting, size, spacing)
    assert counting.diffusion.calls == 0


@pytest.mark.parametrize("size, spacing, says", [
    ((320, 320, 128), (1.5, 1.5, 2), "x one of 256, 384, 512"),
    ((256, 384, 128), (1.5, 1.5, 2), "same size along x and y"),
    ((256, 256, 128), (1.5, 1.0, 2), "same spacing along x and y"),
    ((256, 256, 128), (0.8, 0.8, 2), "field of view along x would be 256 × 0.8 mm = 204.8 mm"),
    ((256, 256, 128), (1.5, 1.5, 6), "along z must be between 0.5 and 5 mm"),
])
def test_maisi_grid_limits(size, spacing, says):
    card = {"architecture": mc.parse_network_config(mc.example_config("published")), "grid": mc.MAISI_CT_GRID}
    with pytest.raises(InvalidOptionError, match=re.escape(says)):
        mc.check_request(card, size, spacing)
    assert mc.check_request(card, (512, 512, 768), (0.8, 0.8, 1.0))[0] == (512, 512, 768)


def test_body_region_is_required_where_the_model_takes_one():
    card = {"architecture": mc.parse_network_config(mc.example_config("tiny", "ddpm")), "grid": GRID,
            "conditioning": {"body_region": True}}
    with pytest.raises(InvalidOptionError, match="needs a body region"):
        mc.check_request(card, (32, 32, 32), (1, 1, 1))
    with pytest.raises(InvalidOptionError, match="Unknown body region knee"):
        mc.check_request(card, (32, 32, 32), (1, 1, 1), ["knee"])
    assert mc.check_request(card, (32, 32, 32), (1, 1, 1), ["abdomen", "Chest"])[2] == (1, 2)


def test_samplers_follow_the_training_scheduler(model):
    with pytest.raises(InvalidOptionError, match="trained with rflow; it samples with rflow, not 'ddim'"):
        latent.generate_volume(model, sampler="ddim")
    with pytest.raises(InvalidOptionError, match="between 1 and 1000"):
        latent.generate_volume(model, steps=5000)
    ddpm = _model("ddpm")
    with pytest.raises(InvalidOptionError, match="body region"):
        latent.generate_volume(ddpm, sampler="ddim")
    a = latent.generate_volume(ddpm, sampler="ddim", steps=3, eta=1.0, seed=5, body_region=["chest"])
    b = latent.generate_volume(ddpm, sampler="ddim", steps=3, eta=1.0, seed=5, body_region=["chest"])
    assert np.array_equal(a.volume.array, b.volume.array)       # DDIM's noise comes from the seed too
    assert any("DDIM" in w for w in a.warnings)
    c = latent.generate_volume(ddpm, sampler="ddpm", steps=3, seed=5, body_region=["chest", "pelvis"])
    assert c.settings["sampler"] == "ddpm" and c.volume.shape == (32, 32, 32)


# ------------------------------------------------------------------------------------------------------ memory

def test_memory_check_refuses_with_the_need_and_what_fits(model):
    counting = _with(model, diffusion=_Counting(model.diffusion))
    size = (128, 128, 128)
    weights = float(model.parameter_bytes())
    arch = model.card["architecture"]

    def need(s, t=None):
        return mc.estimate_memory(arch, s, "cpu", weights, tile=t).device_total

    smallest_tile = need(size, (16, 16, 16))
    available = 0.9 * smallest_tile
    with pytest.raises(InvalidOptionError) as err:
        latent.generate_volume(counting, size, (2, 2, 2), available=available)
    text = str(err.value)
    assert counting.diffusion.calls == 0
    assert f"needs about {mc.gib(need(size))}" in text and f"only {mc.gib(available)} is available" in text
    assert f"smallest decoding tile (16×16×16 latent voxels) needs {mc.gib(smallest_tile)}" in text
    fits = re.search(r"What would fit: (\d+)×(\d+)×(\d+) voxels \(([\d.]+ [MG]B)\)", text)
    assert fits, text
    suggested = tuple(int(v) for v in fits.groups()[:3])
    assert all(s % 32 == 0 for s in suggested) and np.prod(suggested) < np.prod(size)
    assert min(need(suggested, t) for t in mc.tile_candidates([s // 4 for s in suggested])) <= available


def test_the_largest_decoding_tile_that_fits_is_chosen(model):
    weights = float(model.parameter_bytes())
    arch = model.card["architecture"]

    def need(s, t=None):
        return mc.estimate_memory(arch, s, "cpu", weights, tile=t).device_total

    assert latent.plan(model, (64, 64, 64), available=need((64, 64, 64)) * 1.01).tile is None
    big = (128, 128, 128)
    assert need(big, (16, 16, 16)) < need(big, (24, 24, 24)) < need(big)
    assert latent.plan(model, big, available=need(big) * 1.01).tile is None
    assert latent.plan(model, big, available=need(big, (24, 24, 24)) * 1.01).tile == (24, 24, 24)
    assert latent.plan(model, big, available=need(big, (16, 16, 16)) * 1.01).tile == (16, 16, 16)
    with pytest.raises(InvalidOptionError, match="What would fit: the same size with decoding tiles of 16×16×16"):
        latent.plan(model, big, tile=(24, 24, 24), available=need(big, (16, 16, 16)) * 1.01)


def test_a_fixed_decoding_tile_is_used_and_reported(model):
    result = latent.generate_volume(model, (64, 32, 32), (2, 2, 2), tile=(8, 8, 8), steps=1)
    assert result.settings["decode_tile"] == [8, 8, 8] and any("tiles" in w for w in result.warnings)
    assert result.volume.shape == (32, 32, 64)


def test_published_size_plan_on_a_24_gb_gpu():
    """MAISI at 512³ decoded whole needs ~200 GB; on a 24 GB card a tile fits, on 4 GB nothing that large does."""
    arch = mc.parse_network_config(mc.example_config("published"))
    card = {"architecture": arch, "grid": mc.MAISI_CT_GRID}
    weights = 4.0 * 230e6

    def estimate(s, t):
        return mc.estimate_memory(arch, s, "cuda", weights, tile=t)

    plan = mc.plan_memory(estimate, (512, 512, 512), 4, 24 * mc.GIB, mc.smaller_sizes(card, (512, 512, 512)))
    assert plan.tile is not None and plan.device_total <= 24 * mc.GIB
    assert plan.tile[0] >= 48        # the largest window that fits, not the smallest
    with pytest.raises(InvalidOptionError, match="needs about 2") as err:        # ~200 GB, whole
        mc.plan_memory(estimate, (512, 512, 512), 4, 4 * mc.GIB, mc.smaller_sizes(card, (512, 512, 512)))
    fits = re.search(r"What would fit: (\d+)×(\d+)×(\d+) voxels", str(err.value))
    suggested = tuple(int(v) for v in fits.groups())
    assert suggested[0] == suggested[1] and suggested[0] in (256, 384)
    assert mc.plan_memory(estimate, suggested, 4, 4 * mc.GIB).device_total <= 4 * mc.GIB


# --------------------------------------------------------------------------------------- progress and cancel

def test_progress_rises_to_one_and_cancel_stops_within_a_step(model):
    seen = []
    latent.generate_volume(model, steps=4, progress=lambda f, s: seen.append((f, s)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert {s for _, s in seen} == {"diffusion", "decoding", "done"}

    token = CancelToken()
    counting = _with(model, diffusion=_Counting(model.diffusion))

    def cancel_after_two(fraction, stage):
        if stage == "diffusion" and counting.diffusion.calls == 2:
            token.cancel()

    with pytest.raises(CancelledError):
        latent.generate_volume(counting, steps=10, progress=cancel_after_two, cancel=token)
    assert counting.diffusion.calls == 2


# ------------------------------------------------------------------------------------------------- ControlNet

def test_labels_become_bit_planes():
    planes = latent.label_condition(np.array([[[0, 1], [5, 255]]], dtype=np.uint8))
    assert planes.shape == (1, 8, 1, 2, 2)
    assert planes[0, :, 0, 1, 0].tolist() == [1, 0, 1, 0, 0, 0, 0, 0]          # 5 = 0b101
    assert planes[0, :, 0, 1, 1].tolist() == [1] * 8
    with pytest.raises(InvalidOptionError, match="between 0 and 255"):
        latent.label_condition(np.array([[[300]]]))


def test_labels_drive_the_controlnet_every_step(model):
    cn = _Counting(model.controlnet)
    following = _with(model, controlnet=cn)
    labels = np.zeros((32, 32, 32), dtype=np.uint8)
    labels[8:24, 8:24, 8:24] = 1
    a = latent.generate_volume(following, steps=3, seed=4, labels=labels)
    assert cn.calls == 3 and a.settings["follows_labels"] is True
    b = latent.generate_volume(following, steps=3, seed=4)
    assert not np.array_equal(a.volume.array, b.volume.array)
    with pytest.raises(InvalidOptionError, match="label map is 16×16×16 voxels; the output is 32×32×32"):
        latent.generate_volume(following, labels=np.zeros((16, 16, 16), dtype=np.uint8))
    with pytest.raises(InvalidOptionError, match="no ControlNet"):
        latent.generate_volume(_with(model, controlnet=None), labels=labels)
