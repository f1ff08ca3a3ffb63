"""``Runner``: one call for every registered operation, run in this process or in the worker."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import InvalidMaskError
from ..pipelines import registry
from ..progress import CancelToken, ProgressFn
from ..result import Result
from ..volume import Volume
from .client import WorkerClient, run_in_worker

#: What a report keeps of each model card: identity, provenance and the demo warning, not the architecture.
CARD_FIELDS = ("name", "kind", "version", "sha256", "demo", "description", "warning", "training", "licence")


def card_summary(card: dict) -> dict:
    return {k: card[k] for k in CARD_FIELDS if k in card}


class Runner:
    """Runs any operation of the registry, in this process (models loaded on first use and kept, keyed by kind,
    folder and device) or in the worker.

    ``model_dir`` replaces the bundled model of each operation's first model kind; the others stay bundled.
    """

    def __init__(self, worker: bool = False, model_dir: Optional[str] = None, device: Optional[str] = None,
                 client: Optional[WorkerClient] = None) -> None:
        self.worker, self.model_dir, self.device = worker, model_dir, device
        self.load_s: Optional[float] = None       # seconds spent loading models here; None until one was loaded
        self._models: dict[tuple, Any] = {}
        self.cards: dict[str, dict] = {}           # card summaries of the models used, by model name
        self._own_client = worker and client is None
        self._client = WorkerClient() if self._own_client else client

    def __call__(self, op: str, image: Volume, mask: Optional[Volume] = None, *,
                 progress: Optional[ProgressFn] = None, cancel: Optional[CancelToken] = None,
                 **options: Any) -> Result:
        """``options``: those the operation declares (None = unset: the declared default or the model's applies)."""
        operation = registry.get(op)
        options = operation.check(options)
        if operation.needs_mask and mask is None:
            raise InvalidMaskError(f"The operation {op} needs a mask: {operation.mask_help}")
        if self.worker:
            result = run_in_worker(op, image, mask, model_dir=self.model_dir, device=self.device,
                                   progress=progress, cancel=cancel, client=self._client, **options)
            self.cards = dict(result.model_cards)
            return result
        if cancel is not None:
            cancel.check()
        used: dict[str, dict] = {}

        def model(kind: str, primary: bool = True) -> Any:
            loaded = self._model(kind, self.model_dir if primary and operation.model_kinds[:1] == (kind,) else None,
                                 progress)
            for card in _cards_of(loaded):
                used[card["name"]] = card_summary(card)
            return loaded

        result = operation.runner()(registry.RunContext(model, progress, cancel, self.device), image, mask, **options)
        self.cards = used
        result.model_cards = dict(used)
        return result

    def _model(self, kind: str, folder: Optional[str], progress: Optional[ProgressFn]) -> Any:
        key = (kind, folder, self.device)
        if key not in self._models:
            from .. import models   # deferred: torch is only needed where the work happens
            if progress is not None:
                progress(0.0, "loading models")
            t0 = time.perf_counter()
            self._models[key] = models.load(kind, folder, self.device or "auto")
            self.load_s = round((self.load_s or 0.0) + time.perf_counter() - t0, 3)
        return self._models[key]

    @property
    def models_loaded(self) -> bool:
        return bool(self._models)

    def close(self) -> None:
        self._models.clear()
        if self._own_client and self._client is not None:
            self._client.close()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cards_of(loaded: Any) -> list[dict]:
    """The model cards a loaded model carries: a model pair (codec + texture model) carries two."""
    cards = getattr(loaded, "cards", None)
    if cards is None:
        card = getattr(loaded, "card", None)
        cards = [card] if card else []
    return [c for c in cards if isinstance(c, dict) and "name" in c]
