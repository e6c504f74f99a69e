"""Checking a build: evaluation, gates, the manifest and its report, the build-path search."""
