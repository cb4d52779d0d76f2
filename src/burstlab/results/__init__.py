"""A run: records, one metric table, one percentile, SLOs, summary, manifest, run directory."""
