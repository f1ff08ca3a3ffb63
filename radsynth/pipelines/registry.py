"""Operation registry: every module's user-level operations declare themselves here, once.

An :class:`Operation` names its typed options (default, range, unit, help and the reason for the default), says
which options are volumes, whether it needs a mask and which model kinds it loads, and holds its run function. The
worker protocol, the runner, the CLI and the Slicer logic all read these declarations; nothing else keeps a table
of operation names or defaults.

This module is torch-free: declarations are imported by hosts (Slicer, the CLI's worker client) that never run a
network. Run functions import the heavy pipeline modules inside their bodies.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
from typing import Any, Callable, Mapping, Optional, Union

from ..errors import InvalidOptionError, RadSynthError

#: option kinds; "volume"/"volumes"/"labels" travel to the worker as scratch files, the others as JSON. A "volume"
#: is a region (every non-zero voxel counts); a "labels" volume is a label map whose values mean something (kept)
KINDS = ("int", "float", "bool", "str", "choice", "point", "vector", "mapping", "volume", "volumes", "labels")
VOLUME_KINDS = ("volume", "volumes", "labels")
#: modules imported for their declarations; RADSYNTH_PLUGINS (comma-separated module names) adds more
BUILTIN = ("radsynth.pipelines.tumor_ops", "radsynth.pipelines.generate.slices_ops", "radsynth.pipelines.inpaint",
           "radsynth.pipelines.generate.volume_ops")
PLUGINS_ENV = "RADSYNTH_PLUGINS"


def _fmt(value: float) -> str:
    """A number as people write it: 2147483647, not 2.14748e+09; 1.5 stays 1.5."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


@dataclasses.dataclass(frozen=True)
class Option:
    """One typed option. ``default`` None means "unset": the run function (or the model card) decides."""
    name: str
    kind: str
    default: Any = None
    help: str = ""
    unit: str = ""
    min: Optional[float] = None
    max: Optional[float] = None
    choices: tuple[str, ...] = ()
    reason: str = ""          # why the default is what it is: shown in the docs and the panel's tooltip

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"option {self.name}: unknown kind {self.kind!r}")
        if self.default is not None:
            try:
                self.check(self.default)
            except InvalidOptionError as exc:   # a declaration that breaks its own range is a programming error
                raise ValueError(f"option {self.name}: default {self.default!r} does not fit ({exc})") from exc

    @property
    def is_volume(self) -> bool:
        return self.kind in VOLUME_KINDS

    def describe(self) -> str:
        """Help text with the unit, range and default, as the CLI and the panel's tooltips show it."""
        parts = [self.help.rstrip(".")] if self.help else []
        if self.choices:
            parts.append("one of " + ", ".join(self.choices))
        if self.min is not None or self.max is not None:
            lo = "−∞" if self.min is None else _fmt(self.min)
            hi = "∞" if self.max is None else _fmt(self.max)
            parts.append(f"range {lo}–{hi}{' ' + self.unit if self.unit else ''}")
        elif self.unit:
            parts.append(f"in {self.unit}")
        if self.default is not None and self.kind in ("int", "float", "str", "choice", "bool"):
            parts.append(f"default {_fmt(self.default)}" if isinstance(self.default, (int, float))
                         and not isinstance(self.default, bool) else f"default {self.default}")
        return "; ".join(parts) + "."

    def check(self, value: Any) -> Any:
        """``value`` converted to this option's type; a clear InvalidOptionError when it does not fit."""
        if value is None:
            return None
        label = self.name.replace("_", " ")
        if self.kind in ("int", "float"):
            if isinstance(value, bool):
                raise InvalidOptionError(f"The {label} must be a number (got {value!r}).")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidOptionError(f"The {label} must be a number (got {value!r}).") from None
            if not math.isfinite(number):
                raise InvalidOptionError(f"The {label} must be a finite number (got {value!r}).")
            if self.kind == "int":
                if number != int(number):
                    raise InvalidOptionError(f"The {label} must be a whole number (got {value!r}).")
                number = int(number)
            if (self.min is not None and number < self.min) or (self.max is not None and number > self.max):
                lo = "−∞" if self.min is None else _fmt(self.min)
                hi = "∞" if self.max is None else _fmt(self.max)
                unit = f" {self.unit}" if self.unit else ""
                raise InvalidOptionError(f"The {label} must be between {lo} and {hi}{unit} (got {_fmt(number)}).")
            return number
        if self.kind == "bool":
            return bool(value)
        if self.kind == "choice" and value not in self.choices:
            raise InvalidOptionError(f"Unknown {label} {value!r}; choose one of {', '.join(self.choices)}.")
        if self.kind in ("point", "vector"):
            try:
                values = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise InvalidOptionError(f"The {label} must be three numbers (got {value!r}).") from None
            if len(values) != 3 or not all(math.isfinite(v) for v in values):
                raise InvalidOptionError(f"The {label} must be three finite numbers in mm (got {value!r}).")
            return values
        return value


@dataclasses.dataclass
class RunContext:
    """What a run function gets besides its inputs: models (loaded once and cached by the runner), progress, cancel.

    ``model(kind)`` returns the loaded model of that kind: the folder the user chose for the operation's first model
    kind (``primary``), otherwise the bundled default.
    """
    model_fn: Callable[[str, bool], Any]
    progress: Optional[Callable[[float, str], None]] = None
    cancel: Any = None
    device: Optional[str] = None      # what the host asked for ("auto", "cpu", "cuda"); models loaded by name use it

    def model(self, kind: str, primary: bool = True) -> Any:
        return self.model_fn(kind, primary)


#: run(context, image, mask, **options) -> radsynth.result.Result; or "package.module:function", imported on
#: first use so that declarations stay torch-free and below the pipelines they run
RunFn = Union[Callable[..., Any], str]


@dataclasses.dataclass(frozen=True)
class Operation:
    name: str
    module: str                       # the Slicer module / CLI group it belongs to, e.g. "tumor"
    summary: str                      # one line, for the CLI's command help and the panel
    run: RunFn
    options: tuple[Option, ...] = ()
    needs_mask: bool = True
    mask_help: str = "Region mask (label volume, any grid)."
    model_kinds: tuple[str, ...] = ()  # the first is the one a user's "model folder" choice replaces
    needs_image: bool = True          # False: made from nothing; the run function gets image None

    def runner(self) -> Callable[..., Any]:
        """The run function (imported now when declared by name)."""
        if callable(self.run):
            return self.run
        module, _, function = self.run.partition(":")
        return getattr(importlib.import_module(module), function)

    def option(self, name: str) -> Option:
        for opt in self.options:
            if opt.name == name:
                return opt
        raise InvalidOptionError(f"The operation {self.name} has no option {name!r}.")

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    @property
    def volume_options(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options if o.is_volume)

    def defaults(self) -> dict[str, Any]:
        return {o.name: o.default for o in self.options if o.default is not None}

    def check(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Validated options with the declared defaults filled in for unset (None) ones; unknown names are
        refused. Options without a default stay absent: the run function or the model card decides."""
        unknown = sorted(set(options) - set(self.option_names))
        if unknown:
            raise InvalidOptionError(f"The operation {self.name} does not take {', '.join(unknown)}.")
        given = {k: self.option(k).check(v) for k, v in options.items() if v is not None}
        return {**self.defaults(), **given}


_REGISTRY: dict[str, Operation] = {}
_loaded = False


def register(operation: Operation) -> Operation:
    existing = _REGISTRY.get(operation.name)
    if existing is not None and existing is not operation:
        raise RadSynthError(f"Two operations are named {operation.name!r} ({existing.module}, {operation.module}).")
    _REGISTRY[operation.name] = operation
    return operation


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def load_declarations() -> None:
    """Import the built-in declarations and the plugins named in RADSYNTH_PLUGINS (once per process)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    plugins = [p.strip() for p in os.environ.get(PLUGINS_ENV, "").split(",") if p.strip()]
    for name in (*BUILTIN, *plugins):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise RadSynthError(f"Could not load the operations module {name!r} ({exc}).") from exc


def get(name: str) -> Operation:
    load_declarations()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidOptionError(f"Unknown operation {name!r}; known: {', '.join(sorted(_REGISTRY))}.") from None


def operations(module: Optional[str] = None) -> list[Operation]:
    load_declarations()
    return [op for op in _REGISTRY.values() if module is None or op.module == module]


def common_options(steps_default: Optional[int] = None, steps_max: int = 1000,
                   eta_reason: str = "") -> tuple[Option, ...]:
    """Options every diffusion operation takes: sampler steps, seed and stochasticity."""
    return (
        Option("steps", "int", steps_default, "Sampler steps (unset: the model card's benchmarked default)",
               min=2, max=steps_max),
        Option("seed", "int", 0, "Random seed; the same seed and inputs give the same result", min=0,
               max=2 ** 31 - 1),
        Option("eta", "float", None, "Sampler stochasticity: 0 deterministic, 1 fully stochastic "
               "(unset: the model card's)", min=0.0, max=1.0, reason=eta_reason),
    )
