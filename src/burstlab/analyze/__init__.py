"""Characterise a request table the way the BurstGPT paper does (burstiness first)."""
