"""Fine texture after decoding: the lesion's level and high-frequency detail, rendered from the request.

The f = 4 demo codec keeps little fine texture (an SD of 102 HU comes back as 58 HU, and the interior's GLCM
contrast is 2-4 whatever is asked), so the heterogeneity and contrast sliders could not move its output, and on
10-25 mm lesions the codec's soft edge pulls the lesion's level towards lung. This stage runs after paste-back, on
the image's own grid (a 1.5 mm texture pasted onto 0.6 mm pixels is smoothed by the interpolation; tried first,
it reached half the requested contrast), inside the lesion only:

* the level is set to the requested mean (the lesion's own deviations from its mean are kept);
* where the lesion is smoother than asked, Gaussian-filtered noise supplies the missing spread (noise injection
  scaled by the request, as style-based generators inject it); where it is rougher than asked, its deviations are
  scaled down: a request of what the decoder already made adds nothing;
* the noise's grain (Gaussian sigma, mm) sets the neighbour-to-neighbour contrast.

Which spread and grain give the requested ``firstorder_Entropy`` and ``glcm_Contrast`` is not guessed: a table
measured by ``scripts/calibrate_texture_detail.py`` with pyradiomics on the stage's final output (the project's
radiomics settings, which resample to 1.5 mm), on training-half sites of the sample CTs, is stored in the texture
model's card and inverted here. Voxels farther from the mask than the synthesis margin are never changed.
"""

from __future__ import annotations

from typing import Mapping, NamedTuple, Optional

import numpy as np
from scipy import ndimage

from .errors import ModelError
from .volume import Volume

#: model card key of the calibration table
CARD_KEY = "texture_detail"
#: the request features the stage renders
LEVEL, SPREAD, GRAIN = "firstorder_Mean", "firstorder_Entropy", "glcm_Contrast"


class DetailParams(NamedTuple):
    mean_hu: float     # the lesion's level
    sd_hu: float       # its spread (decoded deviations + injected noise)
    grain_mm: float    # the noise's Gaussian sigma


class Calibration(NamedTuple):
    """Measured response of the stage: ``entropy[i, j]`` and ``contrast[i, j]`` (pyradiomics, final image) for
    spread ``sd_hu[i]`` and grain ``grain_mm[j]``."""
    sd_hu: np.ndarray
    grain_mm: np.ndarray
    entropy: np.ndarray
    contrast: np.ndarray


def calibration_from_card(card: Mapping) -> Optional[Calibration]:
    """The card's calibration, or None for a model calibrated without this stage (the stage is then skipped)."""
    entry = card.get(CARD_KEY)
    if entry is None:
        return None
    try:
        cal = Calibration(*(np.asarray(entry["table"][k], dtype=np.float64)
                            for k in ("sd_hu", "grain_mm", "entropy", "contrast")))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"The model card's texture-detail calibration is unreadable ({exc!r}).") from exc
    shape = (len(cal.sd_hu), len(cal.grain_mm))
    if cal.entropy.shape != shape or cal.contrast.shape != shape or min(shape) < 2 \
            or not all(np.all(np.isfinite(a)) for a in cal) or np.any(np.diff(cal.sd_hu) <= 0) \
            or np.any(np.diff(cal.grain_mm) <= 0):
        raise ModelError("The model card's texture-detail calibration table is inconsistent "
                         f"(expected {shape} finite entries on increasing axes).")
    return cal


#: a contrast miss counts half as much as an entropy miss of the same z: chosen by sweeping each slider across its
#: training range on the calibration table itself (training-half sites; not the held-out evaluation): at weight 1
#: the entropy slider moved little between 2.3 and 4.1 bits at the preset's contrast, at 1/3 the contrast slider's
#: low end went flat; 1/2 keeps both ranges (docs/texture-path.md)
CONTRAST_WEIGHT = 0.5
#: table intervals are subdivided this many times (bilinear in spread and log grain) for the inversion's search
SUBDIVIDE = 16


def _fine_axis(nodes: np.ndarray) -> np.ndarray:
    """``nodes`` with SUBDIVIDE - 1 points inserted in every interval (the nodes themselves kept exactly)."""
    steps = np.linspace(0.0, 1.0, SUBDIVIDE + 1)[:-1]
    inner = (nodes[:-1, None] + (nodes[1:] - nodes[:-1])[:, None] * steps[None, :]).ravel()
    return np.append(inner, nodes[-1])


def _bilinear(table: np.ndarray, x: np.ndarray, y: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``table`` (on nodes x × y) at every point of xs × ys."""
    rows = np.array([np.interp(xs, x, table[:, j]) for j in range(len(y))]).T      # xs × y
    return np.array([np.interp(ys, y, r) for r in rows])                            # xs × ys


def invert(cal: Calibration, entropy: float, contrast: float,
           scale: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
    """(spread HU, grain mm) whose measured (entropy, contrast) is nearest the requested pair, distances in units
    of ``scale`` (the features' training SDs: the model's own z-units), over the table interpolated bilinearly in
    spread and log grain; never beyond the table.

    Not every pair can be rendered: at a high spread a coarse grain still gives some contrast, and a fine grain
    needs spread to give any. Searching the pair jointly trades the two in proportion to how far each is from the
    request, where meeting the entropy first would leave the contrast slider no range at high entropy."""
    log_grain = np.log(cal.grain_mm)
    sds, grains = _fine_axis(cal.sd_hu), _fine_axis(log_grain)
    e = _bilinear(cal.entropy, cal.sd_hu, log_grain, sds, grains)
    c = _bilinear(cal.contrast, cal.sd_hu, log_grain, sds, grains)
    cost = ((e - float(entropy)) / scale[0]) ** 2 + (CONTRAST_WEIGHT * (c - float(contrast)) / scale[1]) ** 2
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)   # first minimum: deterministic
    return float(sds[i]), float(np.exp(grains[j]))


def detail_params(features: Mapping[str, float], cal: Calibration,
                  scale: tuple[float, float] = (1.0, 1.0)) -> DetailParams:
    """What the stage renders for a (filled) request; ``scale``: the training SDs of entropy and contrast."""
    sd, grain = invert(cal, float(features[SPREAD]), float(features[GRAIN]), scale)
    return DetailParams(float(features[LEVEL]), sd, grain)


def detail_weight(mask: np.ndarray, spacing_kji, margin_mm: float) -> np.ndarray:
    """1 inside the lesion, falling linearly across the synthesis margin; 0 beyond it (nothing changes there)."""
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    dist = ndimage.distance_transform_edt(~(mask > 0), sampling=spacing)
    reach = margin_mm + float(spacing.min())
    weight = np.clip(1.0 - dist / reach, 0.0, 1.0)
    weight[dist > margin_mm] = 0.0
    return weight.astype(np.float32)


def _sigma_voxels(grain_mm: float, spacing_kji) -> np.ndarray:
    """The noise's Gaussian sigma per axis, in voxels: ``grain_mm`` in plane, never finer than one slice across
    thick slices. A slab reconstructed 5 mm thick does not change its texture from one slice to the next the way
    independent noise would: uncorrelated slices read as slab-to-slab jumps in coronal views, and their differences
    dominated a small lesion's whole-mask GLCM contrast whatever the in-plane grain (33 at a 4 mm grain against 3.4
    in its interior), leaving the contrast slider no range there."""
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    thick = spacing > 1.5 * spacing.min()
    return np.where(thick, np.maximum(float(grain_mm), spacing), float(grain_mm)) / spacing


def noise_field(shape, grain_mm: float, spacing_kji, rng: np.random.Generator, inside: np.ndarray) -> np.ndarray:
    """Gaussian-filtered white noise (sigma ``grain_mm`` in physical units): zero mean over ``inside`` (the level
    stays the requested one) and unit SD over the whole field.

    Scaled over the whole field, not over ``inside``: a grain near the lesion's size leaves little variation within
    a small core, and dividing by that small SD blew the field up everywhere else, so the lesion's rim got extreme
    values while its core stayed smooth (whole-mask contrast 41 against 16 inside at a 3 mm grain). A coarse grain
    now gives a small lesion the smooth variation it has; the calibration measures what that does to the features."""
    sigma = _sigma_voxels(grain_mm, spacing_kji)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    noise /= noise.std() + 1e-12
    values = noise[inside]
    return noise - values.mean() if values.size else noise


#: the lesion's own level and spread are judged this far inside its edge
CORE_MM = 3.0


def _core(inside: np.ndarray, spacing_kji) -> np.ndarray:
    """The voxels at least CORE_MM from the lesion's edge (its deepest half when none are): the codec's soft rim is
    a gradient into lung, not texture, and counting it as spread would leave the core without the detail it lacks."""
    depth = ndimage.distance_transform_edt(inside, sampling=np.asarray(spacing_kji, dtype=np.float64))
    # and one voxel in along every axis: a thick-slice scan's end slices are partial volume too
    core = (depth >= CORE_MM) & ndimage.binary_erosion(inside, structure=np.ones((3, 3, 3), bool))
    return core if core.any() else inside & (depth >= np.median(depth[inside]))


def edge_trend(image_hu: np.ndarray, inside: np.ndarray, spacing_kji) -> np.ndarray:
    """The lesion's mean value as a function of depth below its edge (bins one in-plane voxel deep), on every voxel
    inside it: the codec's soft edge, a blur into lung rather than texture. Kept, it dominated a small lesion's
    whole-mask contrast (33 at a 4 mm grain against 3 in its interior) and pulled its rim towards lung."""
    spacing = np.asarray(spacing_kji, dtype=np.float64)
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)[inside]
    bins = np.floor(depth / spacing.min()).astype(np.int64)
    values = image_hu[inside].astype(np.float64)
    profile = np.bincount(bins, weights=values) / np.maximum(np.bincount(bins), 1)
    trend = np.zeros(image_hu.shape, dtype=np.float64)
    trend[inside] = profile[bins]
    return trend


def render(image_hu: np.ndarray, mask: np.ndarray, weight: np.ndarray, spacing_kji, params: DetailParams,
           rng: np.random.Generator) -> np.ndarray:
    """``image_hu`` (the pasted synthesis) with the lesion's level and spread set to ``params``.

    Inside the lesion: level + k · (its texture) + amplitude · noise, where its texture is what it holds beyond its
    edge trend, k ≤ 1 shrinks a rougher-than-asked lesion and the amplitude adds only the spread it lacks (both
    judged in its core); blended in by ``weight`` (so the edge itself is the weight's ramp across the margin)."""
    inside = mask > 0
    if not inside.any():
        return image_hu.astype(np.float32)
    core = _core(inside, spacing_kji)
    texture = np.where(inside, image_hu - edge_trend(image_hu, inside, spacing_kji), 0.0)
    own_sd = float(texture[core].std())
    keep = min(1.0, params.sd_hu / own_sd) if own_sd > 0 else 1.0
    amplitude = float(np.sqrt(max(params.sd_hu ** 2 - (keep * own_sd) ** 2, 0.0)))
    lesion = params.mean_hu + keep * (texture - float(texture[core].mean()))
    if amplitude > 0:
        lesion = lesion + amplitude * noise_field(image_hu.shape, params.grain_mm, spacing_kji, rng, core)
    return (image_hu + weight * (lesion - image_hu)).astype(np.float32)


def apply(volume: Volume, mask: np.ndarray, params: DetailParams, margin_mm: float, seed: int) -> Volume:
    """A copy of ``volume`` (the pasted synthesis, native grid) with the stage rendered around ``mask`` (a (k, j, i)
    array on its grid); voxels farther than ``margin_mm`` from the mask keep their exact values."""
    spacing = np.asarray(volume.spacing, dtype=np.float64)[::-1]
    idx = np.argwhere(mask)
    pad = np.ceil((margin_mm + spacing.min()) / spacing).astype(int) + 1
    lo, hi = np.maximum(idx.min(0) - pad, 0), np.minimum(idx.max(0) + pad + 1, volume.shape)
    sl = tuple(slice(a, b) for a, b in zip(lo, hi))
    weight = detail_weight(mask[sl], spacing, margin_mm)
    orig = volume.array[sl]
    rendered = render(orig.astype(np.float32), mask[sl], weight, spacing, params, stage_rng(seed))
    out = volume.array.copy()
    if np.issubdtype(out.dtype, np.integer):
        info = np.iinfo(out.dtype)
        rendered = np.clip(np.rint(rendered), info.min, info.max)
    touched = weight > 0
    block = out[sl]
    block[touched] = rendered[touched].astype(out.dtype)
    return volume.with_array(out)


def stage_rng(seed: int) -> np.random.Generator:
    """The stage's own noise stream: reproducible per seed, independent of the prior's and the sampler's."""
    return np.random.default_rng([int(seed), 0x7E57])


#: the calibration's axes (spread, grain); a grain below half the in-plane voxel is white noise already. The spread
#: starts at 0 HU (a flat core): with 5 HU the lowest node, the three lowest entropy requests of the slider's range
#: all got that node and the interior's response to them was noise (interior Spearman 0.87)
SD_AXIS_HU = (0.0, 2.5, 5.0, 10.0, 20.0, 35.0, 55.0, 80.0, 110.0, 150.0, 200.0)
GRAIN_AXIS_MM = (0.3, 0.6, 1.0, 1.6, 2.5, 4.0, 6.0, 9.0)
#: the measurements the table is fitted to, averaged: the whole mask (the feature as defined; on 5 mm slices its
#: partial-volume end slabs alone give a homogeneous lesion an entropy of ~3.4) and its interior (the tissue itself).
#: Tried: contrast fitted on the interior alone (and a contrast weight of 0.3): the interior's contrast slope on
#: held-out sites stayed 0.43 and the entropy slider's interior Spearman fell to 0.90, so both stay averaged
FIT_ON = ("whole", "interior")


def fit_table(raw: Mapping) -> dict:
    """The stored table from the per-site measurements (``raw["sites"][s][where]["entropy"|"contrast"]``, each
    spread × grain, for every ``where`` in FIT_ON): per site the mean over FIT_ON, then the median over sites,
    rounded. Re-running this on a card's ``raw`` gives its table."""
    sites = raw["sites"]
    if not sites:
        raise ModelError("The texture-detail calibration has no measured sites.")
    table = {"sd_hu": [float(v) for v in raw["sd_hu"]], "grain_mm": [float(v) for v in raw["grain_mm"]]}
    for key in ("entropy", "contrast"):
        stack = np.array([np.mean([site[where][key] for where in FIT_ON], axis=0) for site in sites],
                         dtype=np.float64)
        table[key] = np.round(np.median(stack, axis=0), 4).tolist()
    return table
