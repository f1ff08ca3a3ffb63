"""One check for "a real, finite number" (bools and NaN are not), shared by options, feature files and sliders."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import InvalidOptionError


def finite_number(value: Any, what: str) -> float:
    """``value`` as a float, or InvalidOptionError saying ``what`` must be a finite number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise InvalidOptionError(f"{what} must be a finite number (got {value!r}).")
    return float(value)
