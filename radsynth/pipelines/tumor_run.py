"""Run functions of TumorSynth's operations: declared options → pipeline calls (named by ``tumor_ops``)."""

from __future__ import annotations

from typing import Any, Optional

from ..errors import RadSynthError
from ..volume import Volume
from . import manipulate, tumor
from .registry import RunContext
from .tumor_ops import SHAPE_MODEL, SHAPE_OPTIONS, TEXTURE_MODEL


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


def remove(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
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
    return manipulate.move(image, mask, o.pop("shift_lps"), **_sampling(ctx, o), **o)


def resize(ctx: RunContext, image: Volume, mask: Volume, **o: Any):
    return manipulate.resize(image, mask, **_sampling(ctx, o), **o)
