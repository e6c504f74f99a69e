"""Every file name a build writes, defined once. Model files come from the variant table (vitq.variants)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from vitq.errors import RecipeError
from vitq.variants import BY_ID

SAMPLES = "samples"  # the sample set's key in a stage's inputs/outputs: its labels.csv, images beside it
CALIBRATION = "calibration"  # the calibration set's key: its images.txt, images beside it
TORCHSCRIPT_RECORD = "torchscript:int8"  # the int8 stage's record's key (vitq.layout.ArtifactPaths.torchscript_record)
FOLDERS = (SAMPLES, CALIBRATION)  # keys that stand for a whole folder (hashed, cached and restored whole)


def lowered(program: Path) -> bool:
    """Whether an ExecuTorch candidate's file holds a program. One that failed (could not be lowered, ExecuTorch's
    runtime refuses it, or the pte stage found it off fp32) is left empty, its delegation record saying why (the pte
    stage writes both): a result doit keeps like any other, so the failure is not retried on every build while its
    inputs stay the same."""
    return program.stat().st_size > 0


def failed_candidates(files: Mapping[str, Path]) -> set[str]:
    """The ExecuTorch candidates among ``files`` (variant id -> file) that hold no program (``lowered``): what
    evaluation and bench leave out."""
    return {key for key, path in files.items()
            if key in BY_ID and BY_ID[key].format == "executorch" and not lowered(path)}


@dataclass(frozen=True)
class ArtifactPaths:
    root: Path  # artifacts/<recipe>/

    @classmethod
    def for_recipe(cls, artifacts_root: Path, name: str) -> ArtifactPaths:
        root = (Path(artifacts_root) / name).absolute()
        if root.parent != Path(artifacts_root).absolute() or name in ("", ".", ".."):
            raise RecipeError(name, "name", f"would write outside {artifacts_root}")
        return cls(root)

    def file(self, variant_id: str) -> Path:
        """The artifact file of a variant (one that has a file: see vitq.variants)."""
        name = BY_ID[variant_id].file
        if name is None:
            raise ValueError(f"variant {variant_id} is built in memory and has no file")
        return self.root / name

    # -- the sample images every variant is checked on
    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    @property
    def samples_labels(self) -> Path:
        return self.samples_dir / "labels.csv"

    # -- the calibration images (static int8 activation ranges, mixed precision): never the samples
    @property
    def calibration_list(self) -> Path:
        return self.root / "calibration" / "images.txt"

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
    def delegation(self) -> Path:
        """What ExecuTorch's XNNPACK partitioner took and what it left on portable kernels (for the manifest)."""
        return self.delegation_of("pte")

    def delegation_of(self, variant_id: str) -> Path:
        """The same record for one ExecuTorch candidate, with how it was quantized (layers kept in float)."""
        return self.root / f"{variant_id.replace('_', '-')}-delegation.json"

    @property
    def torchscript_record(self) -> Path:
        """How int8.pt was made: the TorchScript method used and the Linears kept float (for the manifest)."""
        return self.root / "int8-torchscript.json"

    @property
    def build_log(self) -> Path:
        return self.root / "build-log.jsonl"

    @property
    def release_dir(self) -> Path:
        return self.root.parent / "releases"

    # -- measurements (doit bench:<recipe>), not part of a release
    @property
    def bench_files(self) -> dict[str, Path]:
        return {"json": self.root / "bench.json", "md": self.root / "bench.md", "png": self.root / "bench.png"}
