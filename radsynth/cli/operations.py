"""Commands made from the operation registry: ``radsynth <module> <operation>`` for every registered operation
that has no hand-written command, with one CLI option per declared option.

A new module's operation (or a plugin's, named in RADSYNTH_PLUGINS) gets its command here without CLI code: points
and shifts are typed in RAS as Slicer shows them, volumes as file paths (regions: resampled onto the image; label
maps: read with their values), mappings as JSON files.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from ..errors import RadSynthError
from ..pipelines import registry
from .common import DEVICE, IMAGE, IN_PROCESS, MODELS, OUT, OUT_MASK, REPORT, Device, Inputs, option_flag, \
    parse_ras, read_label_map, run_operation

_TYPES = {"int": Optional[int], "float": Optional[float], "bool": Optional[bool], "str": Optional[str],
          "choice": Optional[str], "point": Optional[str], "vector": Optional[str], "mapping": Optional[Path],
          "volume": Optional[Path], "volumes": Optional[list[Path]], "labels": Optional[Path]}
_FIXED = {"image": (Path, IMAGE), "out": (Path, OUT), "out_mask": (Optional[Path], OUT_MASK),
          "report": (Optional[Path], REPORT), "device": (Device, DEVICE), "models": (Optional[Path], MODELS),
          "in_process": (bool, IN_PROCESS)}


def _param(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def _cli_name(opt: registry.Option) -> str:
    """A point or shift declared in LPS is typed in RAS (``point_lps`` → ``--point-ras``)."""
    base = opt.name[:-4] + "_ras" if opt.kind in ("point", "vector") and opt.name.endswith("_lps") else opt.name
    return base


def _flag(opt: registry.Option) -> Any:
    if opt.kind in ("point", "vector"):
        return typer.Option(None, "--" + _cli_name(opt).replace("_", "-"), metavar="R,A,S",
                            help=opt.describe() + " Typed as R,A,S in mm, as Slicer shows it.")
    if opt.kind == "mapping":
        return typer.Option(None, "--" + opt.name.replace("_", "-"), help=opt.describe() + " A JSON file.")
    if opt.kind == "labels":
        return typer.Option(None, "--" + opt.name.replace("_", "-"), help=opt.describe() + " A label map file; "
                            "its values are kept.")
    if opt.is_volume:
        return typer.Option(None, "--" + opt.name.replace("_", "-"), help=opt.describe() + " A label volume file"
                            + (" (repeatable)." if opt.kind == "volumes" else "."))
    if opt.kind == "bool":   # both spellings, so a yes/no option that defaults to yes can be switched off
        flag = opt.name.replace("_", "-")
        return option_flag(opt, f"--{flag}/--no-{flag}")
    return option_flag(opt)


def _read_mapping(path: Path, what: str) -> dict:
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RadSynthError(f"{what}: file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RadSynthError(f"{what}: {path} is not valid JSON ({exc}).") from None
    if not isinstance(value, dict):
        raise RadSynthError(f"{what}: {path} must hold a JSON object.")
    return value


def _flag_name(opt: registry.Option) -> str:
    return "--" + _cli_name(opt).replace("_", "-")


def _engine_value(opt: registry.Option, value: Any, given: Inputs) -> Any:
    if value is None:
        return None
    if opt.kind in ("point", "vector"):
        return parse_ras(value, _flag_name(opt))
    if opt.kind == "mapping":
        return _read_mapping(value, _flag_name(opt))
    if opt.kind == "volume":
        return given.read_mask(value, _flag_name(opt))
    if opt.kind == "volumes":
        return [given.read_mask(v, _flag_name(opt)) for v in value] or None
    if opt.kind == "labels":   # values mean something (a semantic map): not binarised, resampled by the engine
        return read_label_map(value, _flag_name(opt))
    return value


def make_command(op: registry.Operation) -> Callable[..., None]:
    def command(**kwargs: Any) -> None:
        def options(given: Inputs):
            return {o.name: _engine_value(o, kwargs.get(_cli_name(o)), given) for o in op.options}, {}

        files = {_flag_name(o): kwargs.get(_cli_name(o)) for o in op.options if o.is_volume or o.kind == "mapping"}
        run_operation(op.name, kwargs.get("image"), kwargs.get("mask"), kwargs["out"], kwargs["out_mask"],
                      kwargs["report"], kwargs["device"], kwargs["models"], kwargs["in_process"], options,
                      input_paths=files)

    params = [_param("image", *_FIXED["image"])] if op.needs_image else []
    if op.needs_mask:
        params.append(_param("mask", Path, typer.Option(..., "--mask", help=op.mask_help)))
    params += [_param(_cli_name(o), _TYPES[o.kind], _flag(o)) for o in op.options]
    params += [_param(name, *spec) for name, spec in _FIXED.items() if name != "image"]
    command.__signature__ = inspect.Signature(params)   # typer reads the options from here
    command.__doc__ = op.summary
    command.__name__ = op.name.replace("-", "_")
    return command


def register(app: typer.Typer, groups: dict[str, typer.Typer], handwritten: set[str]) -> None:
    """Add a command for each registered operation not in ``handwritten``, under its module's group."""
    for op in registry.operations():
        if op.name in handwritten:
            continue
        group = groups.get(op.module)
        if group is None:
            group = groups[op.module] = typer.Typer(help=f"Operations of the {op.module} module.",
                                                    no_args_is_help=True)
            app.add_typer(group, name=op.module)
        group.command(op.name)(make_command(op))
