"""``burstlab demo``: the main job on the bundled sample, with nothing to download."""

from __future__ import annotations


def demo() -> None:
    """Load the bundled Azure 2023 conversation trace and print its trace info."""
    from burstlab.cli.trace_cmds import print_info, warn
    from burstlab.trace.info import trace_info
    from burstlab.trace.readers import read_trace

    table, report = read_trace("sample")
    print_info(trace_info(table, report))
    warn(report)
