"""Sample images and their labels: what every variant is evaluated on.

A labels file maps an image (relative to the images folder) to the class indices it accepts:
CSV with a header ``file,label`` where ``label`` is one index or several separated by spaces
(a photo of a cat may fairly be a tabby or a tiger cat), or YAML ``{file: index or [indices]}``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import yaml

from vitq.errors import InputError
from vitq.recipe import Recipe


@dataclass(frozen=True)
class Sample:
    path: Path
    accepted: tuple[int, ...]  # class indices counted as correct; the first is the primary label

    @property
    def label(self) -> int:
        return self.accepted[0]


def source_files(recipe: Recipe) -> dict[str, Path]:
    """The user's labels file and images a recipe points at, as ``labels`` and ``image:<name>`` (empty for
    generated samples). Only files that exist: a missing one is the samples stage's one-line error."""
    if recipe.samples.builtin is not None:
        return {}
    folder, labels = Path(recipe.samples.dir), Path(recipe.samples.labels)
    images = sorted(p for p in folder.glob("*") if p.is_file() and not p.name.startswith(".") and p != labels)
    return {**({"labels": labels} if labels.is_file() else {}), **{f"image:{p.name}": p for p in images}}


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def calibration_files(recipe: Recipe) -> dict[str, Path]:
    """A calibration folder's images as ``image:<name>`` (the first ``calibration.count`` by name); empty when the
    recipe calibrates on its training split, or the folder is missing (the calibration stage's one-line error)."""
    spec = recipe.calibration
    if spec is None or spec.dir is None or not Path(spec.dir).is_dir():
        return {}
    images = sorted(p for p in Path(spec.dir).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return {f"image:{p.name}": p for p in images[:spec.count]}


def read_samples(labels_file: Path, num_classes: int | None = None, shown_as: Path | None = None) -> list[Sample]:
    """A build's materialised samples (``samples/labels.csv`` and the images beside it), checked against
    the model's classes. ``shown_as`` names the user's own labels file in messages, when copied from one."""
    images_dir = labels_file.parent
    entries = read_labels(labels_file)
    labels_file = shown_as or labels_file
    if not entries:
        raise InputError(labels_file, "labels file lists no images")
    samples = []
    for name, accepted in entries:
        image = images_dir / name
        if not image.resolve().is_relative_to(images_dir.resolve()):
            raise InputError(labels_file, f"{name}: points outside {images_dir}")
        if not image.is_file():
            raise InputError(labels_file, f"{name}: image file not found in {images_dir}")
        if num_classes is not None and any(not 0 <= c < num_classes for c in accepted):
            raise InputError(labels_file, f"{name}: class {accepted} out of range 0..{num_classes - 1}")
        samples.append(Sample(image, accepted))
    return samples


def read_labels(path: Path) -> list[tuple[str, tuple[int, ...]]]:
    if not path.is_file():
        raise InputError(path, "labels file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot read labels ({exc.__class__.__name__})") from None
    if path.suffix in (".yaml", ".yml"):
        return _labels_from_yaml(path, text)
    return _labels_from_csv(path, text)


def write_labels_csv(path: Path, rows: list[tuple[str, tuple[int, ...]]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "label"])
        for name, accepted in rows:
            writer.writerow([name, " ".join(str(c) for c in accepted)])


def _labels_from_csv(path: Path, text: str) -> list[tuple[str, tuple[int, ...]]]:
    rows = list(csv.reader(text.splitlines()))
    if not rows or [c.strip() for c in rows[0][:2]] != ["file", "label"]:
        raise InputError(path, "expected a CSV header 'file,label'")
    out = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise InputError(path, f"line {line_no}: expected 'file,label'")
        out.append((row[0].strip(), _classes(path, f"line {line_no}", row[1].split())))
    return out


def _labels_from_yaml(path: Path, text: str) -> list[tuple[str, tuple[int, ...]]]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise InputError(path, "YAML syntax error") from None
    if not isinstance(data, dict):
        raise InputError(path, "expected a mapping of file -> class index (or list of indices)")
    out = []
    for name, value in data.items():
        values = value if isinstance(value, list) else [value]
        out.append((str(name), _classes(path, str(name), values)))
    return out


def _classes(path: Path, where: str, values: list[object]) -> tuple[int, ...]:
    try:
        classes = tuple(int(str(v)) for v in values)
    except ValueError:
        raise InputError(path, f"{where}: class must be an integer index, got {values}") from None
    if not classes:
        raise InputError(path, f"{where}: no class given")
    return classes
