"""The stages display: drawn on a terminal, each stage at least once; nothing when quiet
or off a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from burstlab.cli.steps import Stages, StepBar


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=terminal, width=100), sink


def test_each_stage_and_note_is_drawn_with_its_count() -> None:
    screen, sink = console(terminal=True)
    with Stages(["reading t", "analysing t", "writing"], screen) as stage:
        stage()
        stage()
        stage.note("periodicity")
        stage("writing out/")
    text = sink.getvalue()
    for shown in ("[1/3] reading t", "[2/3] analysing t: periodicity", "[3/3] writing out/"):
        assert shown in text


def test_quiet_or_not_a_terminal_draws_nothing() -> None:
    for terminal, quiet in ((True, True), (False, False)):
        screen, sink = console(terminal)
        with Stages(["reading"], screen, quiet=quiet) as stage:
            stage()
            stage.note("x")
            stage.close()
        with StepBar("simulating", "runs", screen, quiet=quiet) as bar:
            bar(1, 2)
        assert sink.getvalue() == ""


def test_more_stages_than_planned_grow_the_count() -> None:
    screen, sink = console(terminal=True)
    with Stages(["a"], screen) as stage:
        stage()
        stage("b")
    assert "[2/2] b" in sink.getvalue()
