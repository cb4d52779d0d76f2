"""The bundled sample trace, usable with no download."""

from __future__ import annotations

import polars as pl

from burstlab.trace.readers import read_trace


def sample_trace() -> pl.DataFrame:
    """The bundled sample as a request table: the Azure LLM inference trace 2023,
    conversation service, one hour, 19,366 requests (CC-BY 4.0,
    Azure/AzurePublicDataset; Patel et al., Splitwise, ISCA 2024). Also readable
    as the path ``sample`` wherever a trace path is accepted."""
    return read_trace("sample")[0]
