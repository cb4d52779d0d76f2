"""Progress of a long command counted in steps (variants simulated, search trials), as a
transient rich bar on stderr: drawn on a terminal only, gone when the command prints
its result.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID


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
    ) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        console = console or Console(stderr=True)
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
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
