"""Every file name a build writes, defined once. Stages, tasks, manifest and CLI all ask here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitq.errors import RecipeError


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path  # artifacts/<recipe>/

    @classmethod
    def for_recipe(cls, artifacts_root: Path, name: str) -> "ArtifactPaths":
        root = (artifacts_root / name).absolute()
        if root.parent != artifacts_root.absolute() or name in ("", ".", ".."):
            raise RecipeError(name, "name", f"would write outside {artifacts_root}")
        return cls(root)

    # -- samples (only for recipes whose samples are generated, e.g. the held-out digits)
    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def samples_labels(self) -> Path:
        return self.samples_dir / "labels.csv"

    # -- the model chain
    @property
    def fp32(self) -> Path:
        return self.root / "fp32.safetensors"

    @property
    def int8(self) -> Path:
        return self.root / "int8.pt"

    @property
    def optimized(self) -> Path:
        return self.root / "int8.optimized.pt"

    @property
    def lite(self) -> Path:
        return self.root / "int8.ptl"

    @property
    def onnx_fp32(self) -> Path:
        return self.root / "fp32.onnx"

    @property
    def onnx_int8(self) -> Path:
        return self.root / "int8.onnx"

    # -- verification and records
    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def release_dir(self) -> Path:
        return self.root.parent / "releases"

    @property
    def build_log(self) -> Path:
        return self.root / "build-log.jsonl"
