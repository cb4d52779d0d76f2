"""``burstlab fetch``: download BurstGPT release files into the cache."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.progress import TaskID

    from burstlab.trace.releases import KnownFile


def fetch(
    name: Annotated[
        str | None,
        typer.Argument(
            help="Release file, e.g. BurstGPT_1.csv (see --list).",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="List the known files and what is cached.")
    ] = False,
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="Release tag; needed for a file not in --list.", metavar="TAG"),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            help="Release download URL (env BURSTLAB_FETCH_BASE_URL; "
            "default https://github.com/HPMLL/BurstGPT/releases/download).",
            metavar="URL",
            show_default=False,
        ),
    ] = None,
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Expected SHA-256 (hex) of the file.", metavar="HEX"),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Download even if cached.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Download a BurstGPT release file into the cache and print its path.

    Files go to $BURSTLAB_CACHE/traces (default: the user cache dir). A partial
    download is resumed on the next run; the size and SHA-256 are checked where
    known.

    Example: burstlab trace info "$(burstlab fetch BurstGPT_1.csv)"
    """
    from burstlab.core.dirs import cache_dir
    from burstlab.trace.download import fetch as download
    from burstlab.trace.releases import known_files

    if list_:
        if name is not None:
            raise typer.BadParameter("give either NAME or --list, not both")
        _print_list(known_files(), cache_dir())
        return
    if name is None:
        raise typer.BadParameter("give a file NAME to fetch, or --list to see the known files")
    with nullcontext() if quiet else _Bar(name) as bar:
        path = download(name, base_url=base_url, tag=tag, sha256=sha256, force=force, progress=bar)
    typer.echo(str(path))


class _Bar:
    """A download's progress as a transient rich bar on stderr, drawn on a terminal only.

    Called with ``(done, total)`` in bytes (see :data:`burstlab.trace.download.Progress`).
    """

    def __init__(self, name: str) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self._name = name
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            transient=True,
        )
        self._task: TaskID | None = None
        self._done = 0
        self._total: int | None = None

    def __enter__(self) -> _Bar:
        self._bar.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.stop()

    def __call__(self, done: int, total: int | None) -> None:
        if self._task is None:
            self._task = self._bar.add_task(self._name, total=total, completed=done)
        elif done < self._done or total != self._total:
            self._bar.reset(self._task, total=total, completed=done)  # the download started over
        else:
            self._bar.update(self._task, completed=done)
        self._done, self._total = done, total


def _print_list(files: list[KnownFile], cache: Path) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(f"BurstGPT release files (cache: {cache / 'traces'})"))
    table.add_column("name", no_wrap=True)
    table.add_column("tag", no_wrap=True)
    table.add_column("size (bytes)", justify="right", no_wrap=True)
    table.add_column("sha256", no_wrap=True)
    table.add_column("cached", no_wrap=True)
    table.add_column("path", overflow="fold")
    for f in files:
        path = cache / "traces" / f.name
        part = path.with_name(f.name + ".part")
        if path.is_file():
            got = path.stat().st_size
            state = f"yes, {got:,} bytes"
            if f.size is not None and got != f.size:
                state += " (size differs)"
            where = str(path)
        elif part.is_file():
            state = f"partial, {part.stat().st_size:,} bytes"
            where = str(part)
        else:
            state, where = "no", ""
        table.add_row(
            f.name,
            f.tag,
            f"{f.size:,}" if f.size is not None else "unknown",
            "known" if f.sha256 is not None else "unknown",
            state,
            Text(where),
        )
    Console().print(table)
