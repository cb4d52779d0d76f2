"""Progress of a long command, as a transient rich bar on stderr: drawn on a terminal
only (never into a pipe or a file) and not with ``--quiet``, gone when the command
prints its result, so stdout carries the result alone.

:class:`StepBar` counts steps of one kind (variants simulated, search trials);
:class:`Stages` walks a command through its stages (reading, analysing, writing the
report), ``[k/n]`` with the stage's name and the time taken so far.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, ProgressColumn, TaskID


#: ``quiet: Quiet = False`` in a long command's parameters: no progress display.
Quiet = Annotated[
    bool,
    typer.Option(
        "--quiet", "-q", help="No progress display (on stderr, drawn on a terminal only)."
    ),
]


def _progress(console: Console | None, quiet: bool, *columns: ProgressColumn) -> Progress:
    """The one progress display: a spinner, the description, then ``columns``; on
    stderr unless ``console`` says otherwise; off with ``quiet`` or off a terminal.

    What the command prints to stdout meanwhile is shown above the display when
    stdout is the same kind of terminal, and goes straight to stdout otherwise (rich
    would send it to the display's stream: into stderr, out of a pipe)."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn

    console = console or Console(stderr=True)
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        *columns,
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
        redirect_stdout=bool(getattr(sys.stdout, "isatty", lambda: False)()),
    )


class StepBar:
    """``with StepBar("simulating", "variants") as bar: ... bar(done, total)``.

    Called with ``(done, total)`` steps; the bar shows ``done/total UNIT``, the
    elapsed time and an estimate of the time left. ``finished``, if given, replaces
    the description once every step is done (what the command does next).
    """

    def __init__(
        self,
        description: str,
        unit: str,
        console: Console | None = None,
        *,
        finished: str | None = None,
        quiet: bool = False,
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = _progress(
            console,
            quiet,
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self._description = description
        self._finished = finished
        self._task: TaskID | None = None

    def __enter__(self) -> StepBar:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def start(self, total: int) -> None:
        """Show the bar at 0 of ``total`` before the first step ends."""
        self(0, total)

    def __call__(self, done: int, total: int) -> None:
        if self._task is None:
            self._task = self._bar.add_task(self._description, total=total, completed=done)
        else:
            after = self._finished if self._finished is not None and done >= total else None
            self._bar.update(self._task, total=total, completed=done, description=after)


class Stages:
    """``with Stages(["reading", "analysing", "writing the report"]) as stage: ...
    stage("reading a.csv") ...``: a command's stages on one transient line.

    Each call starts the next stage under the name given (the planned name when
    ``None``); :meth:`note` adds a detail to the current one (a library's own
    progress line). The line shows ``[k/n]``, the stage and the seconds it has run.
    """

    def __init__(
        self, planned: list[str], console: Console | None = None, *, quiet: bool = False
    ) -> None:
        from rich.progress import TextColumn, TimeElapsedColumn

        self.planned = list(planned)
        self._bar = _progress(console, quiet, TextColumn(""), TimeElapsedColumn())
        self._task: TaskID | None = None
        self._done = -1
        self._name = ""

    def __enter__(self) -> Stages:
        self._bar.start()
        return self

    def close(self) -> None:
        """Take the display down now (before printing a result); safe to repeat."""
        self._bar.stop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    @property
    def started(self) -> int:
        """Stages started so far."""
        return self._done + 1

    def __call__(self, name: str | None = None) -> None:
        self._done += 1
        if name is None:
            name = self.planned[min(self._done, len(self.planned) - 1)]
        self._name = name
        self._show(name)

    def note(self, detail: str) -> None:
        """Say what the current stage is doing now (``analysing a.csv: periodicity``)."""
        self._show(f"{self._name}: {detail}")

    def _show(self, text: str) -> None:
        total = max(len(self.planned), self._done + 1)
        label = f"[{self._done + 1}/{total}] {text}"
        if self._task is None:
            self._task = self._bar.add_task(label, total=total, completed=self._done)
        else:
            self._bar.update(self._task, description=label, total=total, completed=self._done)
        self._bar.refresh()  # each stage is drawn, however short (a few per command)
