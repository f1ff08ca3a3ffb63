"""``TumorRunner``: one call for every tumour operation, run in this process or in the worker."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import InvalidMaskError, RadSynthError
from ..progress import CancelToken, ProgressFn
from ..volume import Volume
from .client import WorkerClient, run_in_worker
from .protocol import MASK_OPS, check_options

#: What a report keeps of each model card: identity, provenance and the demo warning, not the architecture.
CARD_FIELDS = ("name", "kind", "version", "sha256", "demo", "description", "warning", "training")


class TumorRunner:
    """Runs an operation of ``protocol.OPTIONS`` in this process (models loaded on first use, then kept) or in
    the worker.

    The one place that dispatches an operation to the pipelines; the worker itself runs one in-process.
    """

    def __init__(self, worker: bool = False, model_dir: Optional[str] = None, device: Optional[str] = None,
                 client: Optional[WorkerClient] = None) -> None:
        self.worker, self.model_dir, self.device = worker, model_dir, device
        self.load_s: Optional[float] = None       # seconds the in-process model load took; None until loaded
        self._models: Any = None
        self._shape_model: Any = None
        self.cards: dict[str, dict] = {}           # card summaries of the models used, by model name
        self._own_client = worker and client is None
        self._client = WorkerClient() if self._own_client else client

    def __call__(self, op: str, image: Volume, mask: Optional[Volume] = None, *,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None, **options: Any) -> Any:
        """``options``: those ``protocol.OPTIONS`` lists for ``op``, plus steps, seed and eta (None = unset)."""
        options = {k: v for k, v in options.items() if v is not None}
        check_options(op, options)
        if op in MASK_OPS and mask is None:
            raise InvalidMaskError(f"The operation {op} needs the tumour's mask.")
        if self.worker:
            result = run_in_worker(op, image, mask, model_dir=self.model_dir, device=self.device,
                                   progress=progress, cancel=cancel, client=self._client, **options)
            self.cards = result.report().get("model_cards", {})
            return result
        self._load(progress)
        if cancel is not None:
            cancel.check()
        return self._run_here(op, image, mask, options, progress, cancel)

    def _load(self, progress: Optional[ProgressFn]) -> None:
        from ..pipelines import tumor   # deferred: torch is only needed where the work happens
        if self._models is not None:
            return
        if progress is not None:
            progress(0.0, "loading models")
        t0 = time.perf_counter()
        self._models = tumor.load_models(self.model_dir, device=self.device)
        self.load_s = round(time.perf_counter() - t0, 3)
        self.cards = {c["name"]: {k: c[k] for k in CARD_FIELDS if k in c}
                      for c in (self._models.vq_card, self._models.texture_card)}

    def _run_here(self, op: str, image: Volume, mask: Optional[Volume], options: dict, progress, cancel) -> Any:
        from ..pipelines import manipulate, tumor
        o = dict(options)
        common = dict(models=self._models, steps=o.pop("steps", None), seed=int(o.pop("seed", 0)),
                      eta=o.pop("eta", None), progress=progress, cancel=cancel)
        if op in ("synthesize", "retexture", "place") and o.get("target") is None:
            raise RadSynthError("Synthesis needs target texture features (a preset, a feature file or a tumour).")
        if op == "remove":
            return tumor.remove(image, mask, **common)
        if op == "synthesize":
            return tumor.synthesize(image, mask, **o, **common)
        if op == "retexture":
            return manipulate.retexture(image, mask, o.pop("target"), texture_overrides=o.pop("overrides", None),
                                        **o, **common)
        if op == "move":
            if o.get("shift_lps") is None:
                raise RadSynthError("Say where to move the tumour (a point or a shift in mm).")
            return manipulate.move(image, mask, o.pop("shift_lps"), **o, **common)
        if op == "resize":
            return manipulate.resize(image, mask, **o, **common)
        shape = o.pop("shape_mode", "generate")
        return manipulate.place(image, o.pop("target"), texture_overrides=o.pop("overrides", None), shape=shape,
                                shape_model=self.shape_model() if shape != "painted" else None, **o, **common)

    def shape_model(self):
        """The shape generator, loaded on first use and kept (place with a generated shape)."""
        from ..pipelines.shape import load_shape_model
        if self._shape_model is None:
            self._shape_model = load_shape_model(device=self._models.device if self._models else self.device)
        return self._shape_model

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()

    def __enter__(self) -> "TumorRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
