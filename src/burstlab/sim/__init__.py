"""Discrete-event serving-engine simulator: batching, paged KV, schedulers."""
