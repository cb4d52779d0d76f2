"""The package version, in one place (read by the CLI, caches and result manifests)."""

__version__ = "0.1.0"
