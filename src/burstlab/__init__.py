"""burstlab: LLM serving workloads from real traces.

The public API is small and re-exported here; everything else is internal.
The central object is the *request table*, a polars DataFrame with the
canonical schema described in :mod:`burstlab.trace.schema`.
"""

from burstlab.core.errors import BurstlabError, FetchError, InputError

from burstlab.core.version import __version__

__all__ = ["BurstlabError", "FetchError", "InputError", "__version__"]
