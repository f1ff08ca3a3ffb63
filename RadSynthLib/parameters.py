"""A panel's parameters, declared once and Qt-free, with engine options mirrored from their declarations.

A module lists its parameters as :class:`Param` objects (a Qt-free file its tests read); the widget turns the
list into a ``slicer.parameterNodeWrapper`` class with :func:`wrapper_class` (typed attributes instead of
string-keyed Get/SetParameter). A parameter that mirrors an engine option (:func:`option_param`) takes its
default, range and help from the operation's declaration, so the panel cannot drift from the CLI and the engine.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Optional

from radsynth.pipelines.registry import Option

_TYPES = {"int": int, "float": float, "bool": bool, "str": str, "choice": str}


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter-node value. ``type``: a Python type, or the name of an MRML node class (a node reference)."""
    name: str
    type: Any
    default: Any = None
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    choices: tuple[str, ...] = ()
    help: str = ""
    option: Optional[Option] = None      # the engine declaration this mirrors
    unset: Any = None                    # the value meaning "not set: the engine decides" (e.g. steps 1)

    @property
    def is_node(self) -> bool:
        return isinstance(self.type, str)

    def engine_value(self, value: Any) -> Any:
        """The value as the engine takes it: ``unset`` becomes None."""
        return None if self.unset is not None and value == self.unset else value


def node_param(name: str, node_class: str, help: str = "") -> Param:
    return Param(name, node_class, help=help)


def option_param(name: str, option: Option, *, unset: Any = None) -> Param:
    """A parameter mirroring an engine option. An option whose declared default is "unset" (None: the model card
    decides) needs a sentinel: ``unset`` (below the declared minimum, where a spin box shows "model default")."""
    kind = _TYPES[option.kind]
    default = option.default
    minimum = option.min
    if default is None:
        if unset is None:
            raise ValueError(f"{option.name}: an option without a default needs an 'unset' value for the panel")
        default = unset
        minimum = unset
    return Param(name, kind, default, minimum, option.max, tuple(option.choices), option.describe(), option,
                 unset)


def defaults(params: typing.Iterable[Param]) -> dict[str, Any]:
    return {p.name: p.default for p in params if not p.is_node}


def find(params: typing.Iterable[Param], name: str) -> Param:
    for p in params:
        if p.name == name:
            return p
    raise KeyError(name)


def wrapper_class(name: str, params: typing.Sequence[Param], *, wrap: Callable[[type], type],
                  node_type: Callable[[str], type], within_range: Optional[Callable] = None,
                  choice: Optional[Callable] = None, module: str = __name__) -> type:
    """The class ``wrap`` (``slicer.parameterNodeWrapper``) turns into typed parameter-node access.

    Ranges and choices become ``WithinRange``/``Choice`` annotations when those are given, so the parameter node
    refuses what the declaration refuses.
    """
    annotations: dict[str, Any] = {}
    namespace: dict[str, Any] = {"__module__": module, "__doc__": f"Typed parameters of {name} (from its Param list)."}
    for p in params:
        if p.is_node:
            annotations[p.name] = node_type(p.type)
            continue
        extras = []
        if within_range is not None and (p.minimum is not None or p.maximum is not None):
            extras.append(within_range(-math.inf if p.minimum is None else p.minimum,
                                       math.inf if p.maximum is None else p.maximum))
        if choice is not None and p.choices:
            extras.append(choice(list(p.choices)))
        # Annotated[(type, *extras)]: the tuple form also works on Slicer's older Pythons
        annotations[p.name] = typing.Annotated[(p.type, *extras)] if extras else p.type
        namespace[p.name] = p.default
    namespace["__annotations__"] = annotations
    return wrap(type(name, (), namespace))
