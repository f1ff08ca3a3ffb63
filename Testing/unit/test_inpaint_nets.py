"""DiffusionInpaint networks (Palette-style inpainting UNet, SDM) and the slice-wise region fill on a real CT.

MONAI's diffusion UNets start with a zero output convolution, so a freshly initialised network predicts ε = 0
whatever its inputs: "null map vs map" on such a network would be vacuous. The SDM test therefore trains a tiny SDM
for 100 steps (~10 s) on phantom maps and compares the class statistics of its samples with the map and with the
null map.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radsynth import models
from radsynth.errors import CancelledError, InvalidImageError, InvalidMaskError, ModelError, RadSynthError
from radsynth.nets import inpaint_unet, sdm
from radsynth.nets.inpaint_unet import InpaintUNet, denoiser, masked_input
from radsynth.nets.sdm import SDMUNet, nullable
from radsynth.pipelines import registry
from radsynth.pipelines.inpaint import labels as L
from radsynth.pipelines.inpaint import slices
from radsynth.pipelines.inpaint.slices import SliceModelSpec, fill_region, palette_filler, repaint_filler, sdm_filler
from radsynth.progress import CancelToken
from radsynth.sample_data import sample_path
from radsynth.samplers.ddim import make_scheduler, randn, sample_ddim
from radsynth.samplers.guidance import classifier_free
from radsynth.volume import read_volume

torch.set_num_threads(1)
torch.set_flush_denormal(True)

TINY = {"channels": [8, 16, 16], "attention_levels": [False, False, False], "norm_num_groups": 8}
SCHED = make_scheduler({"num_train_timesteps": 100})


def _randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A network whose zero-initialised output convolution is given random weights, so that inputs matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.unet.out.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    net.scheduler = SCHED
    return net.eval()


# -- Palette-style network ------------------------------------------------------------------------------------------
def test_inpaint_unet_inputs_and_known_pixels():
    net = _randomised(InpaintUNet(TINY))
    x, img = torch.randn(2, 1, 16, 16), torch.randn(2, 1, 16, 16)
    mask = torch.zeros(2, 1, 16, 16)
    mask[..., 4:12, 4:12] = 1
    out = net(x, torch.tensor([3, 50]), masked_input(img, mask), mask, img)
    assert out.shape == (2, 1, 16, 16)
    assert torch.all(masked_input(img, mask)[mask > 0] == inpaint_unet.MASK_FILL)
    with pytest.raises(ValueError, match="neighbouring slice"):
        net(x, torch.tensor([3, 50]), img, mask)
    # the denoiser resets the known pixels of x: what the sample holds there does not matter
    den = denoiser(net, img[:1], mask[:1], img[:1])
    other = torch.where(mask[:1] > 0, x[:1], torch.randn(1, 1, 16, 16))
    assert torch.allclose(den(x[:1], 40), den(other, 40))
    assert not torch.allclose(den(x[:1], 40), den(x[:1] + mask[:1], 40))
    unc = _randomised(InpaintUNet({**TINY, "mask_input": False, "neighbour": False}))
    assert unc.unet.conv_in.conv.in_channels == 1 and net.unet.conv_in.conv.in_channels == 4
    with pytest.raises(ValueError, match="no mask input"):
        denoiser(unc, img[:1], mask[:1])


def test_inpaint_training_loss_falls_and_counts_only_the_mask():
    torch.manual_seed(0)
    net = InpaintUNet({**TINY, "neighbour": False})
    opt = torch.optim.AdamW(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    losses = []
    for _ in range(60):
        phase = torch.rand(8, 1, 1, 1, generator=g) * 6
        img = torch.sin(xx / 3 + phase) * 0.5
        mask = torch.zeros(8, 1, 16, 16)
        mask[..., 5:11, 5:11] = 1
        loss = inpaint_unet.training_loss(net, SCHED, img, mask, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    # only pixels inside the mask enter the loss: without a mask there is nothing to learn
    img = torch.zeros(2, 1, 16, 16)
    assert inpaint_unet.training_loss(net, SCHED, img, mask[:2], generator=torch.Generator().manual_seed(1)) > 0
    assert inpaint_unet.training_loss(net, SCHED, img, torch.zeros_like(mask[:2])) == 0


def test_builders_round_trip_through_the_model_registry(tmp_path):
    assert {inpaint_unet.KIND, sdm.KIND} <= set(models.known_kinds())   # built into the registry
    region = {"size": [16, 16], "spacing": [1.0, 1.0], "window": [-1000, 400]}
    net = InpaintUNet(TINY)
    models.save_model(tmp_path / "fill", net, {"name": "t-fill", "kind": inpaint_unet.KIND, "version": "1",
                                               "architecture": TINY, "region": region,
                                               "schedule": {"num_train_timesteps": 100}})
    loaded = models.load(inpaint_unet.KIND, tmp_path / "fill", "cpu")
    assert isinstance(loaded, InpaintUNet) and loaded.scheduler.num_train_timesteps == 100
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), loaded.state_dict().values()))
    s = SDMUNet({**TINY, "spade_intermediate_channels": 8}, classes=L.ALL)
    models.save_model(tmp_path / "sdm", s, {"name": "t-sdm", "kind": sdm.KIND, "version": "1",
                                            "architecture": {**TINY, "spade_intermediate_channels": 8},
                                            "classes": list(L.ALL), "region": region})
    assert models.load(sdm.KIND, tmp_path / "sdm", "cpu").classes == L.ALL
    card = models.read_card(tmp_path / "fill")
    models.write_card(tmp_path / "fill", {**card, "architecture": {**TINY, "channels": [8, 16, 32]}})
    with pytest.raises(ModelError, match="do not match"):
        models.load(inpaint_unet.KIND, tmp_path / "fill", "cpu")


# -- SDM ------------------------------------------------------------------------------------------------------------
H = 16
CLASS_VALUE = torch.tensor([-1.0, 0.0, -0.8, -0.8, -0.9, 0.6])   # phantom intensity of each label


def _phantom_maps(b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    maps = torch.zeros(b, H, H, dtype=torch.long)
    for n in range(b):
        cy, cx = torch.randint(6, 10, (2,), generator=g)
        m = maps[n]
        m[((yy - cy) ** 2 / 36 + (xx - cx) ** 2 / 49) < 1] = L.BODY
        m[((yy - cy) ** 2 / 9 + (xx - cx + 3) ** 2 / 4) < 1] = L.RIGHT_LUNG
        m[((yy - cy) ** 2 / 9 + (xx - cx - 3) ** 2 / 4) < 1] = L.LEFT_LUNG
        ny, nx = torch.randint(5, 11, (2,), generator=g)
        m[((yy - ny) ** 2 + (xx - nx) ** 2) < 3] = L.NODULE
    return maps, CLASS_VALUE[maps][:, None] + 0.05 * torch.randn(b, 1, H, H, generator=g)


@pytest.fixture(scope="module")
def trained_sdm() -> SDMUNet:
    torch.manual_seed(0)
    net = SDMUNet({**TINY, "channels": [16, 32, 32], "neighbour": False, "spade_intermediate_channels": 16})
    opt = torch.optim.AdamW(net.parameters(), 2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):
        maps, img = _phantom_maps(16, g)
        loss = sdm.training_loss(net, SCHED, img, net.one_hot(maps), map_dropout=0.2, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.scheduler = SCHED
    return net.eval()


def test_sdm_one_hot_null_map_and_unknown_labels():
    net = SDMUNet({**TINY, "neighbour": False, "spade_intermediate_channels": 8})
    oh = net.one_hot(np.array([[0, 5], [2, 3]]))
    assert oh.shape == (1, 7, 2, 2) and torch.all(oh.sum(1) == 1) and torch.all(oh[:, -1] == 0)
    null = net.null_map(oh)
    assert torch.all(null[:, -1] == 1) and torch.all(null[:, :-1] == 0)
    with pytest.raises(L.UnknownLabelError, match="9") as err:
        net.one_hot(np.array([[0, 9]]))
    assert "known labels" in str(err.value).lower()
    with pytest.raises(L.UnknownLabelError, match="malignant"):
        net.one_hot(np.array([[0, L.MALIGNANT]]))
    seg = torch.cat([oh, oh])
    dropped = sdm.drop_maps(net, seg.repeat(50, 1, 1, 1), 0.2, torch.Generator().manual_seed(0))
    share = float((dropped[:, -1, 0, 0] == 1).float().mean())
    assert 0.1 < share < 0.3


def test_sdm_null_map_and_map_give_different_class_statistics(trained_sdm):
    """A briefly trained SDM (100 steps): with the map the nodule comes out bright and the lungs dark, with the null
    map both are alike (measured: nodule 0.56 vs lung −0.33 with the map; 0.07 vs 0.06 null; guidance 3: 0.88 vs
    −0.67)."""
    maps, _ = _phantom_maps(8, torch.Generator().manual_seed(5))
    seg = trained_sdm.one_hot(maps)
    noise = randn((8, 1, H, H), torch.Generator().manual_seed(1), seg)

    def stats(scale: float, conditional: bool = True) -> dict[int, float]:
        den = classifier_free(nullable(trained_sdm, seg), scale, conditional=conditional)
        out = sample_ddim(den, noise, SCHED, 10)[:, 0]
        return {c: float(out[maps == c].mean()) for c in (L.BACKGROUND, L.BODY, L.LEFT_LUNG, L.NODULE)}

    null, cond, strong = stats(1.0, conditional=False), stats(1.0), stats(3.0)
    assert cond[L.NODULE] - cond[L.LEFT_LUNG] > 0.5
    assert abs(null[L.NODULE] - null[L.LEFT_LUNG]) < 0.25
    assert strong[L.NODULE] - strong[L.LEFT_LUNG] > cond[L.NODULE] - cond[L.LEFT_LUNG]


# -- slice-wise fill on a real CT -----------------------------------------------------------------------------------
SPEC = SliceModelSpec((32, 32), (1.25, 1.25), (-1000.0, 400.0))


@pytest.fixture(scope="module")
def lung1():
    return read_volume(sample_path("lung1", "image")), read_volume(sample_path("lung1", "label"))


def _reach_mask(ct, mask, reach_mm: float) -> np.ndarray:
    """Voxels within reach_mm of the mask in-plane, on the mask's slices."""
    from scipy import ndimage
    m = mask.array > 0
    out = np.zeros_like(m)
    for k in np.flatnonzero(m.any(axis=(1, 2))):
        out[k] = ndimage.distance_transform_edt(~m[k], sampling=ct.spacing[:2][::-1]) <= reach_mm
    return out


def test_slice_fill_changes_only_region_and_feather_bit_for_bit(lung1):
    ct, tumour = lung1
    net = _randomised(InpaintUNet(TINY))
    res = fill_region(ct, tumour, palette_filler(net, 3), SPEC, margin_mm=2.0, feather_mm=3.0, seed=0)
    changed = res.volume.array != ct.array
    reach = _reach_mask(ct, tumour, 5.0 + 1.25)     # + one model pixel of linear resampling
    assert changed.any() and not changed[~reach].any()
    inside = tumour.array > 0
    assert changed[inside].mean() > 0.9
    assert res.volume.array.dtype == ct.array.dtype and res.volume.same_grid(ct)
    assert res.slices == len(np.unique(np.argwhere(inside)[:, 0])) and res.evaluations == 3 * res.slices
    assert any("resampled" in w for w in res.warnings)
    again = fill_region(ct, tumour, palette_filler(net, 3), SPEC, seed=0).volume.array
    assert np.array_equal(again, res.volume.array)


def test_round_region_is_filled_to_its_thin_ends(lung1):
    """A 30 mm ball on 5 mm slices: its end slices cover few pixels, and every one of its voxels is regenerated."""
    from radsynth.evaluate.heldout import ellipsoid
    ct, _ = lung1
    ball = ellipsoid(ct, np.array([24, 330, 150]), np.array([15.0, 15.0, 15.0]))
    net = _randomised(InpaintUNet(TINY))
    res = fill_region(ct, ct.label_like(ball), palette_filler(net, 2), SliceModelSpec((48, 48), (1.25, 1.25),
                                                                                     SPEC.window))
    assert res.slices == len(np.unique(np.argwhere(ball)[:, 0])) == 7
    assert (res.volume.array != ct.array)[ball].mean() > 0.95


def test_a_region_larger_than_the_training_crop_gets_a_larger_crop_with_context(lung1):
    """lung2's 55 mm tumour on an 80 mm model: the crop grows (the nets are convolutional) and the user is told."""
    ct, _ = lung1
    square = np.zeros(ct.shape, bool)
    square[20:22, 250:300, 150:200] = True      # 31 mm at 0.625 mm; SPEC's 40 mm crop leaves 4.5 mm around it
    seen = []

    class Shape:
        evaluations = 1

        def __call__(self, k, known, mask, neighbour, generator, progress, cancel):
            seen.append(known.shape[-2:])
            return known

    res = fill_region(ct, ct.label_like(square), Shape(), SPEC, margin_mm=2.0, feather_mm=3.0)
    need = (31.25 + 2 * (5.0 + slices.CONTEXT_MM)) / 1.25
    assert all(min(s) >= need and s[0] % slices.CROP_MULTIPLE == 0 for s in seen) and len(seen) == 2
    assert any("larger than the model's 32 x 32 training crop" in w for w in res.warnings)
    small = np.zeros(ct.shape, bool)
    small[20, 270:280, 170:180] = True
    seen.clear()
    fill_region(ct, ct.label_like(small), Shape(), SPEC)
    assert all(tuple(s) == (32, 32) for s in seen)


def test_each_slice_is_conditioned_on_the_one_generated_before(lung1):
    ct, tumour = lung1
    seen: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    class Marking:
        evaluations = 1

        def __call__(self, k, known, mask, neighbour, generator, progress, cancel):
            seen.append((k, neighbour.clone(), mask > 0.5))
            return torch.where(mask > 0.5, torch.full_like(known, k / 100.0), known)

    res = fill_region(ct, tumour, Marking(), SPEC, direction="up")
    ks = [k for k, _, _ in seen]
    assert ks == list(range(1, len(ks) + 1))
    real = torch.from_numpy(res.region.image)[:, None]
    assert torch.equal(seen[0][1], real[0:1])                       # the first sees the real slice below
    for (k, nb, _), (k_prev, _, prev_mask) in zip(seen[1:], seen[:-1]):
        assert torch.all(nb[prev_mask] == k_prev / 100.0)          # the previous slice's fill …
        assert torch.equal(nb[~prev_mask], real[k_prev:k_prev + 1][~prev_mask])   # … in its CT
    seen.clear()
    fill_region(ct, tumour, Marking(), SPEC, direction="down")
    assert [k for k, _, _ in seen] == ks[::-1]
    assert torch.equal(seen[0][1], real[-1:])                       # from the real slice above
    assert res.region.image.shape[0] == len(ks) + 2


def test_auto_direction_starts_from_the_end_that_looks_like_the_surroundings():
    """The first slice is conditioned on a real one: auto picks the bounding slice whose footprint matches the ring
    around the region (lung2's tumour on the diaphragm came back as soft tissue when filled from below)."""
    from radsynth.pipelines.inpaint.slices import start_end
    image = np.full((6, 40, 40), -0.8)                 # lung around the region, model units
    grow = np.zeros(image.shape, bool)
    grow[1:5, 12:28, 12:28] = True
    image[grow] = 0.1                                  # the tumour being removed
    image[0, 12:28, 12:28] = 0.1                       # below: soft tissue under the region
    image[5, 12:28, 12:28] = -0.75                     # above: lung
    assert start_end(image, grow, (1.25, 1.25)) == "down"
    assert start_end(image[::-1].copy(), grow[::-1].copy(), (1.25, 1.25)) == "up"


def test_repaint_and_sdm_fillers_keep_outside_voxels(lung1):
    ct, tumour = lung1
    unc = _randomised(InpaintUNet({**TINY, "mask_input": False}))
    res = fill_region(ct, tumour, repaint_filler(unc, steps=4, jump_length=2, resample=2), SPEC)
    reach = _reach_mask(ct, tumour, 6.25)
    assert not (res.volume.array != ct.array)[~reach].any()
    assert res.evaluations == res.slices * 6
    net = _randomised(SDMUNet({**TINY, "spade_intermediate_channels": 8}))
    label_map = ct.label_like(np.where(tumour.array > 0, L.NODULE, L.BODY))
    maps = slices.labels_on_box(label_map, ct, tumour, SPEC)
    res = fill_region(ct, tumour, sdm_filler(net, maps, guidance=2.0, steps=3, jump_length=0, resample=1), SPEC)
    assert not (res.volume.array != ct.array)[~reach].any() and res.evaluations == res.slices * 6
    with pytest.raises(L.UnknownLabelError, match="11"):
        sdm_filler(net, np.where(maps == L.NODULE, 11, maps))


def test_fill_bad_input_and_cancel(lung1):
    ct, tumour = lung1
    net = _randomised(InpaintUNet(TINY))
    filler = palette_filler(net, 2)
    with pytest.raises(InvalidMaskError, match="empty"):
        fill_region(ct, ct.label_like(np.zeros(ct.shape, bool)), filler, SPEC)
    whole = np.zeros(ct.shape, bool)
    whole[20, 1:-1, 1:-1] = True
    with pytest.raises(InvalidMaskError, match="most of slice"):
        fill_region(ct, ct.label_like(whole), filler, SPEC)
    top = np.zeros(ct.shape, bool)
    top[-1, 200:210, 200:210] = True
    with pytest.raises(InvalidMaskError, match="first or last slice"):
        fill_region(ct, ct.label_like(top), filler, SPEC)
    big = np.zeros(ct.shape, bool)
    big[20, 100:400, 100:400] = True            # over 170 mm: more than 4 × the 40 mm crop minus context holds
    with pytest.raises(InvalidMaskError, match="too large"):
        fill_region(ct, ct.label_like(big), filler, SPEC)
    with pytest.raises(InvalidImageError):
        fill_region(ct.with_array(np.zeros(ct.shape, np.float32) + 0.5), tumour, filler, SPEC)
    token = CancelToken()
    calls = []

    def progress(f, stage):
        calls.append(stage)
        if len(calls) == 3:
            token.cancel()
    before = ct.array.copy()
    with pytest.raises(CancelledError):
        fill_region(ct, tumour, filler, SPEC, progress=progress, cancel=token)
    assert np.array_equal(ct.array, before) and calls[0].startswith("slice 1/")


def test_registry_run_functions(lung1):
    ct, tumour = lung1
    net = _randomised(InpaintUNet(TINY))
    net.card = {"name": "tiny", "version": "0", "demo": True, "region": {"size": [32, 32], "spacing": [1.25, 1.25],
                                                                          "window": [-1000, 400]},
                "sampling": {"steps": 3}}
    ctx = registry.RunContext(lambda kind, primary=True: net)
    op = registry.get("fill")
    result = op.runner()(ctx, ct, tumour, **op.check({"seed": 1}))
    assert result.volume.is_synthetic and result.settings["steps"] == 3 and result.settings["method"].endswith("DDIM")
    assert result.settings["network_evaluations"] == 3 * result.settings["slices"]
    result = op.runner()(ctx, ct, tumour, **op.check({"mode": "regenerate", "strength": 0.5, "steps": 4}))
    assert result.settings["network_evaluations"] == 2 * result.settings["slices"]
    unc = _randomised(InpaintUNet({**TINY, "mask_input": False}))
    unc.card = net.card
    with pytest.raises(RadSynthError, match="mask-conditioned"):
        op.runner()(registry.RunContext(lambda kind, primary=True: unc), ct, tumour, **op.check({"mode": "regenerate"}))
    render = registry.get("render-map")
    with pytest.raises(RadSynthError, match="label map"):
        render.runner()(ctx, ct, None, **render.check({}))
    bad = ct.label_like(np.where(tumour.array > 0, 13, 1))
    with pytest.raises(L.UnknownLabelError, match="13"):
        render.runner()(ctx, ct, None, **render.check({"label_map": bad}))
