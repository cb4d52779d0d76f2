"""The ``burstlab`` command line. Heavy libraries are imported inside commands."""
