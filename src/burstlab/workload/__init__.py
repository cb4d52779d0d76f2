"""Workloads from traces: replay windows at any rate, judge their fidelity, export them."""
