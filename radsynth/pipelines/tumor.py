"""Tumour removal and texture synthesis on a CT volume (TumorSynth, texture path).

Both run the same steps: validate → crop a model-sized region → encode the masked crop → Brownian-bridge sampling
in the latent → decode → paste back inside the (dilated) mask only. Synthesis conditions on radiomics texture
features; removal uses the learned null condition.
"""

from __future__ import annotations

import dataclasses
import platform
import time
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..device import autocast
from ..errors import RadSynthError
from ..progress import CancelToken, ProgressFn, StagedProgress
from ..radiomics import texture_features
from ..region import Region, blend_weight, check_mask_fits, extract, paste
from ..result import Result, feature_table
from ..samplers.bridge import sample_bridge
from ..samplers.guidance import classifier_free
from .. import texture_detail as td
from ..texture_prior import MEAN_SD_CONTRAST, with_prior
from ..volume import Volume, check_ct, mask_on_grid
from .loading import TumorModels, load_models
from .texture_fill import complete_texture, moved, outside_training, texture_warnings, unfollowed
from .tumor_ops import GUIDANCE, REMOVE_MARGIN, SYNTH_MARGIN

DEFAULT_GUIDANCE = GUIDANCE.default
#: generated rim around the mask, per operation (the declarations say why); blending fades over FEATHER
MARGIN_MM = {"remove": REMOVE_MARGIN.default, "synthesize": SYNTH_MARGIN.default}
FEATHER_MM = 3.0
#: room kept around any mask inside the model's box, whatever the operation
REACH_MM = max(MARGIN_MM.values()) + FEATHER_MM
STAGE_WEIGHTS = {"load": 1.0, "crop": 0.5, "encode": 0.5, "sample": 8.0, "decode": 0.5, "paste": 0.5,
                 "detail": 0.2, "radiomics": 1.0}


class _Timer:
    def __init__(self, staged: StagedProgress) -> None:
        self.times: dict[str, float] = {}
        self.staged = staged

    def __call__(self, stage: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                timer.staged(stage, 0.0)
                self.t = time.perf_counter()

            def __exit__(self, *exc):
                timer.times[stage] = timer.times.get(stage, 0.0) + time.perf_counter() - self.t
                if exc[0] is None:
                    timer.staged(stage, 1.0)
        return _Ctx()


def _validated_mask(image: Volume, mask: Volume, models: TumorModels) -> np.ndarray:
    check_ct(image)
    on_grid = mask_on_grid(mask, image).array > 0
    check_mask_fits(image, on_grid, models.spec, REACH_MM)
    return on_grid


def _generate(models: TumorModels, region: Region, features: Optional[Mapping[str, float]], guidance: float,
              steps: int, eta: float, seed: int, margin_mm: float, timer: _Timer) -> np.ndarray:
    dev = models.device
    gen_mask = blend_weight(region.mask > 0, np.asarray(models.spec.spacing)[::-1], margin_mm, 0.0)
    fill = float(models.texture_card.get("fill", 0.0))
    masked = np.where(gen_mask > 0, fill, region.image).astype(np.float32)
    if features is not None and models.texture_card.get("source_prior") == MEAN_SD_CONTRAST:
        masked = with_prior(masked, region.mask > 0, features, models.spec, np.random.default_rng(seed))
    condition = None if features is None else models.normalizer.normalize(features)
    factor = int(models.vq_card["latent"]["factor"])
    with timer("encode"), torch.no_grad(), autocast(dev):
        y = models.codec.encode(torch.from_numpy(masked)[None, None].to(dev)).float()
        m = F.avg_pool3d(torch.from_numpy(gen_mask)[None, None].to(dev), factor)

    n_feat = len(models.normalizer.names)
    cond = torch.zeros(1, n_feat, device=dev) if condition is None else torch.from_numpy(condition)[None].to(dev)

    def texture_net(x: torch.Tensor, t: int, null: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        with autocast(dev):
            return models.texture(x, y.expand(b, -1, -1, -1, -1), m.expand(b, -1, -1, -1, -1),
                                  torch.full((b,), t, device=dev), cond.expand(b, -1), null).float()

    denoise = classifier_free(texture_net, guidance, conditional=condition is not None)
    gen = torch.Generator().manual_seed(seed)
    with timer("sample"):
        x0 = sample_bridge(denoise, y, models.bridge, steps, eta=eta, generator=gen,
                           progress=timer.staged.sub("sample"), cancel=timer.staged.cancel)
    with timer("decode"), torch.no_grad(), autocast(dev):
        out = models.codec.decode(x0).float()[0, 0].cpu().numpy()
    # Outside the generation mask the model only saw context; keep the exact input there before paste-back.
    return np.where(gen_mask > 0, out, region.image)


def fine_texture(models: TumorModels, pasted: Volume, mask: np.ndarray, features: Mapping[str, float],
                 margin_mm: float, seed: int) -> tuple[Volume, Optional[dict]]:
    """(volume, what was rendered): the pasted synthesis with the lesion's level and fine texture set from the
    request on the image's own grid (``radsynth.texture_detail``); unchanged, with None, for a model card without
    the stage's calibration."""
    cal = td.calibration_from_card(models.texture_card)
    if cal is None:
        return pasted, None
    names = list(models.normalizer.names)
    scale = tuple(float(models.normalizer.std[names.index(n)]) for n in (td.SPREAD, td.GRAIN))
    params = td.detail_params(features, cal, scale)
    return td.apply(pasted, mask, params, margin_mm, seed), {k: round(v, 3) for k, v in params._asdict().items()}


def _run(operation: str, image: Volume, mask: Volume, models: Optional[TumorModels],
         condition_features: Optional[Mapping[str, float]], guidance: float, steps: Optional[int],
         eta: Optional[float], seed: int, progress: Optional[ProgressFn],
         cancel: Optional[CancelToken], overrides: Optional[Mapping[str, float]] = None,
         margin_mm: Optional[float] = None) -> Result:
    staged = StagedProgress(progress, STAGE_WEIGHTS, cancel)
    timer = _Timer(staged)
    with timer("load"):
        models = models or load_models()
        sampling = models.texture_card.get("sampling", {})
        steps = int(steps or models.default_steps)
        eta = float(sampling.get("eta", 0.0) if eta is None else eta)
        if not 2 <= steps <= models.bridge.num_steps:
            raise RadSynthError(f"Sampling steps must be between 2 and {models.bridge.num_steps}; got {steps}.")
        fill_method, changed = None, []
        if condition_features is not None:
            changed = moved(condition_features, overrides)
            condition_features, fill_method = complete_texture(models.normalizer, models.gaussian, condition_features,
                                                        overrides)
    with timer("crop"):
        on_grid = _validated_mask(image, mask, models)
        region = extract(image, on_grid, models.spec)
    margin = MARGIN_MM[operation] if margin_mm is None else float(margin_mm)
    generated = _generate(models, region, condition_features, guidance, steps, eta, seed, margin, timer)
    with timer("paste"):
        out = paste(image, region, generated, on_grid, margin_mm=margin, feather_mm=FEATHER_MM)
    detail = None
    if condition_features is not None:
        with timer("detail"):
            out, detail = fine_texture(models, out, on_grid, condition_features, margin, seed)
    rows = None
    if condition_features is not None:
        with timer("radiomics"):
            achieved = texture_features(out, on_grid)
            rows = feature_table([(n, float(condition_features[n]), achieved[n]) for n in models.normalizer.names])
    staged.done()
    synthesis = condition_features is not None
    settings = {"steps": steps, "eta": eta, "seed": seed, "guidance": guidance if synthesis else 0.0,
                "device": str(models.device), "region_spec": dataclasses.asdict(models.spec),
                "margin_mm": margin, "feather_mm": FEATHER_MM, "demo_models": models.is_demo,
                "torch": torch.__version__, "python": platform.python_version()}
    if condition_features is not None:
        settings.update(texture_overrides=dict(overrides or {}), texture_fill=fill_method,
                        texture_outside_training=outside_training(models.normalizer, models.gaussian, overrides),
                        texture_unfollowed=unfollowed(models.texture_card, changed), texture_detail=detail)
    out.mark_synthetic(f"radsynth tumor {operation} ({', '.join(f'{k} {v}' for k, v in models.versions.items())})")
    return Result(operation, out, image.label_like(on_grid), {"features": rows} if rows is not None else {},
                  timer.times, models.versions, settings, texture_warnings(settings))


def remove(image: Volume, mask: Volume, models: Optional[TumorModels] = None, *, steps: Optional[int] = None,
           eta: Optional[float] = None, seed: int = 0, margin_mm: Optional[float] = None,
           progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Result:
    """Replace the tissue inside ``mask`` (and a ``margin_mm`` rim) with generated healthy tissue."""
    return _run("remove", image, mask, models, None, 0.0, steps, eta, seed, progress, cancel, margin_mm=margin_mm)


def synthesize(image: Volume, mask: Volume, models: Optional[TumorModels] = None, *, target: Mapping[str, float],
               overrides: Optional[Mapping[str, float]] = None, guidance: float = DEFAULT_GUIDANCE,
               steps: Optional[int] = None, eta: Optional[float] = None, seed: int = 0,
               margin_mm: Optional[float] = None, progress: Optional[ProgressFn] = None,
               cancel: Optional[CancelToken] = None) -> Result:
    """Generate tumour tissue inside ``mask`` whose radiomics texture features approach ``target``.

    ``overrides`` set single features (the sliders); the others follow them (see ``texture_fill``).
    ``guidance`` (classifier-free) scales what the texture tokens add to the unconditional, healthy-tissue output:
    0 = no tumour, 1 = conditional, > 1 stronger (default: DEFAULT_GUIDANCE).
    """
    return _run("synthesize", image, mask, models, target, guidance, steps, eta, seed, progress, cancel, overrides,
                margin_mm)
