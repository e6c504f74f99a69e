"""The tool versions a build records: every library that shapes the bytes of some artifact, by distribution name.
Read from installed metadata (no import), so doit can fingerprint stages without loading torch."""

from __future__ import annotations

import functools
import platform
from importlib.metadata import PackageNotFoundError, version

from vitq import __version__

# Everything that shapes the bytes of some artifact: recorded in every manifest.
RECORDED_TOOLS = ("torch", "torchvision", "timm", "transformers", "onnx", "onnxruntime", "onnxscript", "safetensors",
                  "numpy", "pillow", "scikit-learn", "scikit-image", "doit", "executorch", "torchao")


@functools.cache
def tool_version(distribution: str) -> str:
    if distribution == "python":
        return platform.python_version()
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "missing"


def tool_versions(distributions: tuple[str, ...]) -> dict[str, str]:
    return {d: tool_version(d) for d in ("python", *distributions)}


def recorded_versions() -> dict[str, str]:
    """What a manifest and a bench record: Python, every recorded tool and vitq itself."""
    return {**tool_versions(RECORDED_TOOLS), "vitq": __version__}
