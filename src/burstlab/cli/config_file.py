"""``--config FILE``: a command's options from a YAML (or JSON) file.

The keys a file may hold are derived from the command's own parameters, so an option
added to the command can be set from a file with no change here: each key is an
option's long name without the leading dashes (``max-concurrency``; the same name
with ``_`` is accepted too), or an argument's name (``workload``). Values have the
option's type: a number, ``true``/``false`` for a flag, a list for a repeatable
option, one of the choices for an option that takes one. ``null`` leaves an option at
its default. Relative paths are taken from the current directory, as on the command
line.

The file is read before any other option (an eager option) and checked with a
pydantic model built from the command's parameters (``extra="forbid"``, strict
types): an unknown key, a wrong type or a value out of range is one error naming the
file, line and column of the key. The values then stand in for the options'
defaults, so options on the command line override the file. A bad value that only the
command itself can judge (``timeout: 0``) is reported at the key's line and column
too (:func:`config_file`).
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_origin

import typer
from pydantic import ConfigDict, Field, ValidationError, create_model

from burstlab.core.errors import InputError

try:  # typer carries its own copy of click since 0.20 (about)
    from typer._click.core import ParameterSource
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - a typer built on click itself
    from click import get_current_context  # type: ignore[no-redef]
    from click.core import ParameterSource  # type: ignore[assignment]

__all__ = ["LoadedConfig", "config_file", "config_keys", "load_config"]

R = TypeVar("R")

#: Where the loaded file is kept in the click context's ``meta``.
META_KEY = "burstlab.config_file"
#: The name of the parameter :func:`config_file` adds (its option is ``--config``).
PARAM = "config_file"


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A config file read and checked: the values by parameter name, and where each
    key is (1-based line and column) and how it was spelled."""

    path: Path
    values: dict[str, Any]
    marks: dict[str, tuple[int, int]]
    keys: dict[str, str]

    def error(self, name: str, reason: str) -> InputError:
        """``FILE:LINE:COLUMN: KEY: REASON`` for the parameter ``name``."""
        line, column = self.marks[name]
        reason = reason[:1].lower() + reason[1:]  # as the CLI's other errors read
        return InputError(f"{self.keys[name]}: {reason}", path=self.path, line=line, column=column)


def config_keys(params: list[Any]) -> dict[str, str]:
    """Every key a file may hold for ``params`` (click parameters), mapped to the
    parameter's name: the first long option without dashes (``max-concurrency``), its
    ``_`` spelling, and an argument's name."""
    keys: dict[str, str] = {}
    for param in params:
        if param.name in (None, PARAM) or not getattr(param, "expose_value", True):
            continue
        longs = [o for o in param.opts if o.startswith("--")]
        key = longs[0][2:] if longs else param.name
        keys[key] = param.name
        keys[key.replace("-", "_")] = param.name
    return keys


def _field_type(param: Any) -> Any:
    """The type a file's value must have for ``param``: its annotation, a path as
    text, a list for a repeatable option."""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = descriptor.annotation if descriptor is not None else str
    if annotation is Path or (isinstance(annotation, type) and issubclass(annotation, Path)):
        annotation = str
    if get_origin(annotation) is list:
        (inner,) = get_args(annotation)
        annotation = list[str] if inner is Path else annotation
    elif getattr(param, "multiple", False) or getattr(param, "nargs", 1) == -1:
        annotation = list[annotation]  # type: ignore[valid-type]
    return annotation


def _field(param: Any) -> tuple[Any, Any]:
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    bounds: dict[str, Any] = {}
    if low is not None:
        bounds["gt" if getattr(param, "min_open", False) else "ge"] = low
    if high is not None:
        bounds["lt" if getattr(param, "max_open", False) else "le"] = high
    return (_field_type(param) | None, Field(default=None, **bounds))


def load_config(path: Path, params: list[Any]) -> LoadedConfig:
    """Read ``path`` and check it against ``params`` (a command's click parameters).
    Every problem is an :class:`InputError` naming the file, and the line and column
    where one is known."""
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the config file: {exc.strerror}", path=path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"not UTF-8 text: byte 0x{raw[exc.start]:02x}",
            path=path,
            line=raw.count(b"\n", 0, exc.start) + 1,
            column=exc.start - raw.rfind(b"\n", 0, exc.start),
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "cannot be parsed"
        raise InputError(
            f"not valid YAML: {problem}",
            path=path,
            line=mark.line + 1 if mark is not None else None,
            column=mark.column + 1 if mark is not None else None,
        ) from None
    if root is None:
        return LoadedConfig(path, {}, {}, {})
    if not isinstance(root, yaml.MappingNode) or not isinstance(data, dict):
        raise InputError(
            "a config file is a mapping of option names to values (e.g. 'workers: 2')",
            path=path,
            line=root.start_mark.line + 1,
            column=root.start_mark.column + 1,
        )
    keys = config_keys(params)
    by_name = {p.name: p for p in params}
    values: dict[str, Any] = {}
    marks: dict[str, tuple[int, int]] = {}
    spelled: dict[str, str] = {}
    for key_node, _ in root.value:
        key = key_node.value
        where = {"path": path, "line": key_node.start_mark.line + 1}
        where["column"] = key_node.start_mark.column + 1
        if not isinstance(key, str) or key not in keys:
            close = difflib.get_close_matches(str(key), list(keys), n=1)
            hint = f"did you mean '{close[0]}'?" if close else "see the command's --help"
            raise InputError(
                f"unknown key {key!r} (keys are the command's long option names, without '--')",
                hint=hint,
                **where,
            )
        name = keys[key]
        if name in marks:
            raise InputError(f"{key!r} sets {spelled[name]!r} a second time", **where)
        marks[name] = (where["line"], where["column"])
        spelled[name] = key
        if data[key] is not None:
            values[name] = data[key]
    model = create_model(  # type: ignore[call-overload]
        "ConfigFile",
        __config__=ConfigDict(extra="forbid", strict=True),
        **{name: _field(by_name[name]) for name in marks},
    )
    loaded = LoadedConfig(path, values, marks, spelled)
    try:
        model.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0])
        inner = ".".join(str(p) for p in first["loc"][1:])
        reason = str(first["msg"]).removeprefix("Value error, ")
        raise loaded.error(name, f"{inner}: {reason}" if inner else reason) from None
    return loaded


def _load(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """The ``--config`` option's callback: read the file before the other options
    and make its values their defaults."""
    if value is None:
        return None
    loaded = load_config(Path(value), [p for p in ctx.command.params if p is not param])
    ctx.default_map = {**(ctx.default_map or {}), **loaded.values}
    ctx.meta[META_KEY] = loaded
    return value


@contextmanager
def located(ctx: Any) -> Iterator[None]:
    """Report an :class:`InputError` about an option (``field="--timeout"``) whose
    value came from the config file at the key's line and column instead."""
    try:
        yield
    except InputError as exc:
        loaded: LoadedConfig | None = ctx.meta.get(META_KEY) if ctx is not None else None
        if loaded is None or exc.field is None or not exc.field.startswith("--"):
            raise
        names = [p.name for p in ctx.command.params if exc.field in p.opts]
        if not names or names[0] not in loaded.marks:
            raise
        if ctx.get_parameter_source(names[0]) is not ParameterSource.DEFAULT_MAP:
            raise
        raise loaded.error(names[0], exc.reason) from None


_HELP = (
    "YAML or JSON file of option values (keys: long option names without '--', e.g. "
    "'max-concurrency: 8'); options given on the command line override it."
)


def config_file(command: Callable[..., R]) -> Callable[..., R]:
    """Give a typer command ``--config FILE`` (see the module's docstring): every
    parameter the command has can be set from the file, and an error about an option
    set there names the file, line and column."""
    signature = inspect.signature(command, eval_str=True)
    if PARAM in signature.parameters:
        raise TypeError(f"{command.__name__} already has a parameter named {PARAM}")
    option = inspect.Parameter(
        PARAM,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[
            Path | None,
            typer.Option(
                "--config",
                is_eager=True,
                callback=_load,
                help=_HELP,
                dir_okay=False,
                show_default=False,
            ),
        ],
    )
    params = list(signature.parameters.values())
    kinds = [p.kind for p in params]
    where = len(params)
    if inspect.Parameter.VAR_KEYWORD in kinds:
        where = kinds.index(inspect.Parameter.VAR_KEYWORD)
    params.insert(where, option)

    @functools.wraps(command)
    def run(*args: object, **kwargs: object) -> R:
        kwargs.pop(PARAM, None)
        with located(get_current_context(silent=True)):
            return command(*args, **kwargs)

    run.__dict__["__signature__"] = signature.replace(parameters=params)
    run.__annotations__ = {p.name: p.annotation for p in params} | {
        "return": signature.return_annotation
    }
    return run
