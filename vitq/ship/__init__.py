"""Shipping a build: release archives, provenance, verification, diffs and predictions."""
