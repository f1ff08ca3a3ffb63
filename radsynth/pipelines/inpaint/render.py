"""``render-map``'s registry run function: the region comes as the operation's mask (Python, Slicer) or as its
``region`` option (the CLI's ``--region``: the operation needs no mask, since the map's nodules are the default
region), then SDM renders the map inside it (:func:`radsynth.pipelines.inpaint.slices.run_render_map`)."""

from __future__ import annotations

from typing import Any, Optional

from ...errors import InvalidOptionError
from ...volume import Volume


def run_render_map(ctx: Any, image: Volume, mask: Optional[Volume], region: Optional[Volume] = None,
                   **o: Any) -> Any:
    from .slices import run_render_map as render

    if mask is not None and region is not None:
        raise InvalidOptionError("Give the region to render once: as the mask or as the region option, not both.")
    return render(ctx, image, mask if mask is not None else region, **o)
