"""How ``--help`` shows options: a flag as a flag, a choice as its choices.

typer shows every option's type in its help table, a flag's too (``--quiet <bool>``),
though a flag takes no value. :class:`App` builds every command and group with
:class:`Command` and :class:`Group`, which show no type for a flag; options that take
one of a fixed set are typed with the ``Literal`` types of :mod:`burstlab.cli.choices`,
which typer shows as ``<chat|completions>`` and checks before the command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import typer
from typer.core import TyperCommand, TyperGroup

F = TypeVar("F", bound=Callable[..., Any])


def _plain_flags(params: list[Any]) -> list[Any]:
    """``params`` with each flag's type left out of the help (an empty metavar)."""
    for param in params:
        flag = getattr(param, "is_flag", False) and not getattr(param, "count", False)
        if flag and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """A command whose flags show no ``<bool>`` in ``--help``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class Group(TyperGroup):
    """A group whose flags (``--debug``, ``--version``, ``--help``) show no ``<bool>``."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_flags(super().get_params(ctx))


class App(typer.Typer):
    """A :class:`typer.Typer` whose commands are :class:`Command` and whose groups are
    :class:`Group`, unless a ``cls`` is given."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[F], F]:
        if kwargs.get("cls") is None:
            kwargs["cls"] = Command
        return super().command(*args, **kwargs)
