"""``--force``: the one option, on every command that writes output, to replace it.

Without it a command refuses, before any work, to overwrite output that exists
(:func:`burstlab.core.files.refuse_overwrite`).
"""

from __future__ import annotations

from typing import Annotated

import typer

#: ``force: Force = False`` in a command's parameters.
Force = Annotated[
    bool, typer.Option("--force", help="Overwrite output that exists (refused without it).")
]
