"""Self-contained HTML reports: plots as embedded PNGs, every piece of text escaped."""
