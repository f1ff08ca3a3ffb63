"""``TumorRunner``: one call for remove / synthesize, run in this process or in the worker."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import RadSynthError
from ..progress import CancelToken, ProgressFn
from ..volume import Volume
from .client import WorkerClient, run_in_worker
from .protocol import check_op

#: What a report keeps of each model card: identity, provenance and the demo warning, not the architecture.
CARD_FIELDS = ("name", "kind", "version", "sha256", "demo", "description", "warning", "training")


class TumorRunner:
    """Runs ``remove`` / ``synthesize`` in this process (models loaded on first use, then kept) or in the worker.

    The one place that dispatches an operation to ``pipelines.tumor``; the worker itself runs one in-process.
    """

    def __init__(self, worker: bool = False, model_dir: Optional[str] = None, device: Optional[str] = None,
                 client: Optional[WorkerClient] = None) -> None:
        self.worker, self.model_dir, self.device = worker, model_dir, device
        self.load_s: Optional[float] = None       # seconds the in-process model load took; None until loaded
        self._models: Any = None
        self.cards: dict[str, dict] = {}           # card summaries of the models used, by model name
        self._own_client = worker and client is None
        self._client = WorkerClient() if self._own_client else client

    def __call__(self, op: str, image: Volume, mask: Volume, *, target: Optional[dict[str, float]] = None,
                 overrides: Optional[dict[str, float]] = None, guidance: float = 1.0,
                 steps: Optional[int] = None, seed: int = 0,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None) -> Any:
        check_op(op)
        if self.worker:
            result = run_in_worker(op, image, mask, target=target, overrides=overrides, guidance=guidance,
                                   steps=steps, seed=seed, model_dir=self.model_dir, device=self.device,
                                   progress=progress, cancel=cancel,
                                   client=self._client)
            self.cards = result.report().get("model_cards", {})
            return result
        from ..pipelines import tumor   # deferred: torch is only needed where the work happens
        if self._models is None:
            if progress is not None:
                progress(0.0, "loading models")
            t0 = time.perf_counter()
            self._models = tumor.load_models(self.model_dir, device=self.device)
            self.load_s = round(time.perf_counter() - t0, 3)
            self.cards = {c["name"]: {k: c[k] for k in CARD_FIELDS if k in c}
                          for c in (self._models.vq_card, self._models.texture_card)}
        if cancel is not None:
            cancel.check()
        common = dict(steps=steps, seed=seed, progress=progress, cancel=cancel)
        if op == "remove":
            return tumor.remove(image, mask, self._models, **common)
        if target is None:
            raise RadSynthError("Synthesis needs target texture features (a preset, a feature file or a tumour).")
        return tumor.synthesize(image, mask, self._models, target=target, overrides=overrides, guidance=guidance,
                                **common)

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()

    def __enter__(self) -> "TumorRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
