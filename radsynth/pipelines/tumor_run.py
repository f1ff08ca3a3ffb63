"""Run functions of TumorSynth's operations: declared options → pipeline calls (named by ``tumor_ops``)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ..errors import RadSynthError
from ..volume import Volume
from . import manipulate, tumor
from .registry import RunContext
from .tumor_ops import REMOVAL, REMOVE_MARGIN, SHAPE_MODEL, SHAPE_OPTIONS, TEXTURE_MODEL


def _shape_features(values: Optional[dict]) -> dict[str, float]:
    values = dict(values or {})
    known = {o.name: o for o in SHAPE_OPTIONS}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise RadSynthError(f"Unknown shape feature(s): {', '.join(unknown)}; known: {', '.join(known)}.")
    return {k: known[k].check(v) for k, v in values.items()}


def _sampling(ctx: RunContext, options: dict) -> dict[str, Any]:
    return dict(models=ctx.model(TEXTURE_MODEL), steps=options.pop("steps", None), seed=int(options.pop("seed", 0)),
                eta=options.pop("eta", None), progress=ctx.progress, cancel=ctx.cancel)


def _need_target(options: dict) -> dict:
    if options.get("target") is None:
        raise RadSynthError("Synthesis needs target texture features (a preset, a feature file or a tumour).")
    return options.pop("target")


def _inpaint_remover(ctx: RunContext, margin_mm: Optional[float], steps: Optional[int], seed: int,
                     eta: Optional[float]) -> manipulate.Remover:
    """DiffusionInpaint's healthy fill as TumorSynth's removal (docs/adr/0012): the slice model's own steps and eta
    unless the user set them; TumorSynth's removal margin."""
    from .inpaint.slices import run_fill

    def remover(image: Volume, mask: Volume, progress, cancel):
        sub = RunContext(ctx.model, progress, cancel)
        res = run_fill(sub, image, mask, mode="healthy", steps=steps, seed=seed, eta=eta,
                       margin_mm=REMOVE_MARGIN.default if margin_mm is None else margin_mm)
        return dataclasses.replace(res, operation="remove", settings={**res.settings, "removal": "inpaint"})
    return remover


def _remover(ctx: RunContext, o: dict, margin_mm: Optional[float] = None) -> Optional[manipulate.Remover]:
    """The removal the options ask for: None means the bridge's (the pipelines' default)."""
    if o.pop("removal", REMOVAL.default) != "inpaint":
        return None
    return _inpaint_remover(ctx, margin_mm, o.get("steps"), int(o.get("seed", 0)), o.get("eta"))


def remove(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    remover = _remover(ctx, o, o.get("margin_mm"))
    if remover is not None:
        return remover(image, mask, ctx.progress, ctx.cancel)
    return tumor.remove(image, mask, **_sampling(ctx, o), **o)


def synthesize(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    target = _need_target(o)
    return tumor.synthesize(image, mask, target=target, **_sampling(ctx, o), **o)


def retexture(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    target = _need_target(o)
    return manipulate.retexture(image, mask, target, texture_overrides=o.pop("overrides", None),
                                **_sampling(ctx, o), **o)


def place(ctx: RunContext, image: Volume, mask: Optional[Volume], **o: Any):
    target = _need_target(o)
    shape = o.pop("shape_mode", "generate")
    sampling = _sampling(ctx, o)
    return manipulate.place(image, target, texture_overrides=o.pop("overrides", None), shape=shape,
                            shape_features=_shape_features(o.pop("shape_features", None)),
                            shape_model=ctx.model(SHAPE_MODEL, primary=False) if shape != "painted" else None,
                            **sampling, **o)


def move(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    if o.get("shift_lps") is None:
        raise RadSynthError("Say where to move the tumour (a point or a shift in mm).")
    remover = _remover(ctx, o)
    return manipulate.move(image, mask, o.pop("shift_lps"), remover=remover, **_sampling(ctx, o), **o)


def resize(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    remover = _remover(ctx, o)
    return manipulate.resize(image, mask, remover=remover, **_sampling(ctx, o), **o)
