"""The texture target a synthesis is conditioned on: a source (preset, measured tumour) with some features set.

Features not set follow the set ones by the training regression (see :mod:`radsynth.conditioning`), centred on
the source: untouched sliders reproduce the source exactly.
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from ..conditioning import Gaussian, conditional_fill, gaussian_from_card
from ..errors import RadSynthError
from ..numbers import finite_number
from ..radiomics import FeatureNormalizer

#: the texture features a user sets directly (the panel's sliders; ``--set`` takes any feature)
TEXTURE_SLIDER_FEATURES = ("firstorder_Mean", "firstorder_Entropy", "glcm_Contrast")
FILL_GAUSSIAN = "conditional mean of the training feature Gaussian, centred on the source"
FILL_NONE = "none: the model card has no feature Gaussian; unset features keep the source's values"


def check_overrides(names, overrides: Optional[Mapping[str, float]]) -> dict[str, float]:
    out = {}
    for name, value in (overrides or {}).items():
        if name not in names:
            raise RadSynthError(f"{name!r} is not a texture feature this model is conditioned on "
                                f"(see `radsynth presets --show` for the names).")
        out[name] = finite_number(value, f"The value for {name}")
    return out


def training_range(normalizer: FeatureNormalizer, gaussian: Optional[Gaussian]) -> dict[str, tuple[float, float]]:
    """{feature: (lowest, highest)} over the model's training tumours; empty for a card without a Gaussian."""
    if gaussian is None:
        return {}
    low, high = normalizer.denormalize(gaussian.low), normalizer.denormalize(gaussian.high)
    return {n: (low[n], high[n]) for n in normalizer.names}


def card_training_range(card: Mapping) -> dict[str, tuple[float, float]]:
    """:func:`training_range` from a texture model card alone (no weights), e.g. for a panel's slider limits."""
    normalizer = FeatureNormalizer.from_dict(card["features"])
    gaussian = gaussian_from_card(card, len(normalizer.names)) if "gaussian" in card else None
    return training_range(normalizer, gaussian)


def outside_training(normalizer: FeatureNormalizer, gaussian: Optional[Gaussian],
                     overrides: Optional[Mapping[str, float]]) -> dict[str, list[float]]:
    """Set features beyond the range of the model's training tumours: {name: [requested, lowest, highest]}.

    The model never saw such a tumour; the demo model then renders healthy tissue instead (BENCHMARKS.md), so the
    user is told rather than left to guess. Nothing is changed: the value is still sent as set."""
    ranges = training_range(normalizer, gaussian)
    if not ranges:
        return {}
    return {name: [float(value), round(ranges[name][0], 4), round(ranges[name][1], 4)]
            for name, value in (overrides or {}).items() if not ranges[name][0] <= value <= ranges[name][1]}


#: a slider "follows" when, over the sweep recorded in the model card (``radsynth evaluate sliders --record``), the
#: achieved value rises with the request (Spearman) by at least this fraction of the requested change (slope), over
#: the whole lesion and, where the record has it, over its interior (TumorSynth part 3's targets)
FOLLOWS_SPEARMAN, FOLLOWS_SLOPE = 0.9, 0.5
#: model card key of the recorded slider sweep
SLIDER_EVALUATION = "slider_evaluation"
FOLLOWED, NOT_FOLLOWED = "followed", "not followed"


def _judged(response) -> bool:
    return isinstance(response, Mapping) and all(isinstance(response.get(k), (int, float))
                                                 for k in ("spearman", "slope"))


def follows(response: Mapping) -> bool:
    """Whether one slider's recorded response meets the thresholds, whole lesion and (when recorded) interior."""
    pairs = [("spearman", "slope")]
    if all(isinstance(response.get(k), (int, float)) for k in ("interior_spearman", "interior_slope")):
        pairs.append(("interior_spearman", "interior_slope"))
    return all(response[r] >= FOLLOWS_SPEARMAN and response[s] >= FOLLOWS_SLOPE for r, s in pairs)


def verdict(response: Mapping) -> str:
    """The word stored beside a recorded slider response (``evaluate sliders --record``)."""
    return FOLLOWED if follows(response) else NOT_FOLLOWED


def unfollowed(card: Mapping, features) -> dict[str, dict]:
    """Those of ``features`` whose recorded sweep says the model does not follow them: {name: its response}.
    Empty when the card records no sweep (nothing measured, nothing claimed)."""
    response = card.get(SLIDER_EVALUATION, {})
    response = response.get("texture", {}) if isinstance(response, Mapping) else {}
    judged = {f: response[f] for f in features if _judged(response.get(f))}
    return {f: r for f, r in judged.items() if not follows(r)}


def moved(source: Mapping[str, float], overrides: Optional[Mapping[str, float]]) -> list[str]:
    """The set features that differ from the source by more than 1 % (the panel sends every slider, moved or not,
    rounded to its precision)."""
    return [n for n, v in (overrides or {}).items()
            if n not in source or abs(v - source[n]) > 0.01 * max(abs(source[n]), 1.0)]


def texture_warnings(settings: Mapping) -> list[str]:
    """One line per texture request the result may not follow, from a result's ``settings`` (CLI and panel)."""
    lines = [f"{name} = {value:g} is outside the tumours this model was trained on ({low:g} to {high:g}); "
             "the result may not follow it." for name, (value, low, high)
             in settings.get("texture_outside_training", {}).items()]
    return lines + [f"This model does not follow {name} (recorded slider sweep: Spearman {r['spearman']:.2f}, "
                    f"{r['slope']:.2f} achieved per requested unit): expect little change from moving it."
                    for name, r in settings.get("texture_unfollowed", {}).items()]


def complete_texture(normalizer: FeatureNormalizer, gaussian: Optional[Gaussian],
                     source: Mapping[str, float], overrides: Optional[Mapping[str, float]]) -> tuple[dict, str]:
    """(full target, how unset features were filled) for ``source`` with ``overrides`` applied."""
    overrides = check_overrides(normalizer.names, overrides)
    missing = [n for n in normalizer.names if n not in source]
    if missing:
        raise RadSynthError(f"The texture source lacks {len(missing)} features the model needs, e.g. {missing[0]}.")
    target = {n: float(source[n]) for n in normalizer.names}
    if not overrides:
        return target, FILL_GAUSSIAN if gaussian is not None else FILL_NONE
    if gaussian is None:
        target.update(overrides)
        return target, FILL_NONE
    z = (np.array([target[n] for n in normalizer.names]) - normalizer.mean) / normalizer.std
    position = {n: i for i, n in enumerate(normalizer.names)}
    fixed = {position[n]: (v - normalizer.mean[position[n]]) / normalizer.std[position[n]]
             for n, v in overrides.items()}
    filled = normalizer.denormalize(conditional_fill(z, gaussian.cov, fixed, (gaussian.low, gaussian.high)))
    filled.update(overrides)  # exact, not round-tripped through the z-score
    return filled, FILL_GAUSSIAN
