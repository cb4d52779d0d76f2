"""Every report page extends the one base template, so the Content-Security-Policy
and the shared styles cannot drift apart between pages."""

from __future__ import annotations

from importlib.resources import files

from burstlab.report.page import environment

BASE = "base.html.j2"
POLICY = 'http-equiv="Content-Security-Policy"'


def test_every_page_extends_the_base_and_only_the_base_sets_policy_and_styles() -> None:
    folder = files("burstlab.report") / "templates"
    pages = sorted(p.name for p in folder.iterdir() if p.name.endswith(".html.j2"))
    assert {"run.html.j2", "analysis.html.j2", "forecast.html.j2", "holdout.html.j2"} <= set(pages)
    for name in pages:
        source = (folder / name).read_text(encoding="utf-8")
        if name == BASE:
            assert source.count(POLICY) == 1
            continue
        assert source.startswith('{% extends "base.html.j2" %}'), name
        assert POLICY not in source, name
        assert "<style" not in source, name
        assert "<head" not in source, name


def test_the_policy_forbids_scripts_and_fetches() -> None:
    html = environment().from_string('{% extends "base.html.j2" %}').render()
    policy = html.split(f'{POLICY} content="', 1)[1].split('"', 1)[0]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'none'"
    assert directives["img-src"] == "data:"
    assert "script-src" not in directives  # falls back to default-src 'none'
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'none'"
