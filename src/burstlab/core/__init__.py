"""Small shared types used by every layer: errors, and nothing that imports upward."""

from burstlab.core.errors import BurstlabError, FetchError, InputError

__all__ = ["BurstlabError", "FetchError", "InputError"]
