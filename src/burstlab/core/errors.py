"""Errors a user can act on.

Every problem caused by input (a file, an option, the network) is raised as a
:class:`BurstlabError` subclass. The CLI prints such errors as one line, with no
traceback, and exits with status 2. Anything else escaping is a bug in burstlab.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError


class BurstlabError(Exception):
    """Base class for errors caused by input rather than by a bug.

    ``hint`` is an optional second sentence telling the user what to do next.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(BurstlabError):
    """Bad input at a known place: ``file:line:column: reason``.

    ``line`` and ``column`` are 1-based. ``line`` counts physical lines of a
    text file (the header is line 1) or rows of a Parquet file (first row is
    1). ``column`` is the character position of the offending field in that
    line when it is known; ``field`` names the column of the table, or the
    command-line option (``--slo``) at fault.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.column = column
        self.field = field
        self.reason = reason
        super().__init__(self._format(), hint=hint)

    def _format(self) -> str:
        where = [p for p in (self.path, self.line, self.column) if p is not None]
        prefix = ":".join(str(p) for p in where)
        reason = self.reason
        if self.field is not None and self.field.startswith("-"):
            reason = f"{self.field}: {reason}"
        elif self.field is not None:
            reason = f"column {self.field!r}: {reason}"
        return f"{prefix}: {reason}" if prefix else reason


class FetchError(BurstlabError):
    """A download failed: offline, refused, truncated, or a checksum mismatch."""


def invalid(
    exc: ValidationError,
    *,
    path: str | Path | None = None,
    prefix: str = "",
    option: str | None = None,
    as_options: bool = False,
    model: type[BaseModel] | None = None,
) -> InputError:
    """The one :class:`InputError` for a pydantic ``ValidationError``.

    The first error is reported as ``WHERE: REASON``, where WHERE is the dotted
    location of the bad value (after ``prefix``, e.g. ``"engine."``). ``path``
    names the file it came from; ``option`` the command-line option that gave
    the whole model (``--fixed``). With ``as_options`` the model's fields are
    command-line options themselves, and WHERE is written as one
    (``start_s`` -> ``--start``).

    ``model``, the class validated, lets WHERE name fields only: pydantic puts
    the member of a union it tried in the location (``cost.roofline.mfu``,
    ``gpu.GPU.flops``), and tries every member of a plain union, so its first
    error may be about a member the value never meant to be (``gpu.str`` for a
    mapping). With ``model`` the deepest error under the first error's field
    is reported, and union members are left out of WHERE (``cost.mfu``).
    """
    errors = exc.errors()
    first = errors[0]
    labels: set[str] = set()
    if model is not None:
        labels = _union_labels(model, set())
        same_field = [e for e in errors if e["loc"][:1] == first["loc"][:1]]
        first = max(same_field, key=lambda e: len(e["loc"]))  # first of the deepest
    loc = [str(part) for i, part in enumerate(first["loc"]) if not (i and part in labels)]
    reason = str(first["msg"]).removeprefix("Value error, ")
    if as_options and loc:
        return InputError(reason, field="--" + loc[0].removesuffix("_s").replace("_", "-"))
    where = prefix + ".".join(loc)
    if where:
        reason = f"{where}: {reason}"
    return InputError(reason, path=path, field=option)


def _union_labels(tp: Any, seen: set[type]) -> set[str]:
    """The names pydantic gives the members of every union in ``tp``'s fields: a
    class name (``GPU``, ``str``) for a plain union, the tag (``roofline``) for a
    discriminated one."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _union_labels(args[0], seen)
    labels: set[str] = set()
    if origin is typing.Union or origin is types.UnionType:
        for member in args:
            if typing.get_origin(member) is None:  # a class, not Annotated[...] or list[...]
                labels.add(getattr(member, "__name__", str(member)))
            if isinstance(member, type) and issubclass(member, BaseModel):
                for field in member.model_fields.values():
                    if typing.get_origin(field.annotation) is typing.Literal:
                        labels.update(str(v) for v in typing.get_args(field.annotation))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        if tp in seen:
            return labels
        seen.add(tp)
        args = tuple(field.annotation for field in tp.model_fields.values())
    for arg in args:
        labels |= _union_labels(arg, seen)
    return labels
