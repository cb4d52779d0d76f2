"""What every HTML report shares: the template environment and the atomic write.

Templates live in ``burstlab/report/templates``; autoescaping is on for every
template and string, so file names, model names and notes are always escaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from burstlab.core.files import atomic_write


def environment() -> Environment:
    """A Jinja2 environment over the report templates, escaping everything."""
    return Environment(
        loader=PackageLoader("burstlab.report", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )


def write_page(path: str | Path, template: str, **context: Any) -> Path:
    """Render ``template`` with ``context`` and write it to ``path`` atomically."""
    html = environment().get_template(template).render(**context)
    return atomic_write(path, html.encode("utf-8"))
