"""vitq: YAML recipe -> verified, reproducible mobile builds of Vision Transformers."""

__version__ = "0.1.0"
