"""Data sets that packages ship, so builds and tests need no network."""
