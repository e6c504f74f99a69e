"""The default release's bytes, recorded once in the repository (tests/golden/digits.sha256) and compared on every
machine that runs the suite: "same recipe and versions, same bytes, on any machine" is then proved or refuted by
every CI run, not only by two builds on one host.

Regenerate (after a change that is meant to change the bytes): ``make golden``, which runs this file as a script.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest

from conftest import run_doit

GOLDEN = Path(__file__).resolve().parent / "golden" / "digits.sha256"
RECIPE, VERSION = "digits", "1.0.0"
TARBALL = f"releases/{RECIPE}-{VERSION}.tar.gz"


def release_digests(root: Path) -> dict[str, str]:
    """sha256 of every file of the default build that its release holds, and of the tarball, by path under the
    artifacts root (the sha256sum -c layout of the golden file)."""
    from vitq.check import manifest as mf
    from vitq.layout import ArtifactPaths
    from vitq.ship.release import release_files

    paths = ArtifactPaths(root / RECIPE)
    files = [f"{RECIPE}/{name}" for name in release_files(mf.load(paths.manifest), paths)] + [TARBALL]
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in files}


def read_golden(path: Path = GOLDEN) -> dict[str, str]:
    return {name: digest for digest, name in (line.split("  ", 1) for line in path.read_text().splitlines() if line)}


def pipeline_order(root: Path) -> list[tuple[str, str]]:
    """(file under the artifacts root, the stage that writes it), in the order the pipeline runs its stages."""
    from vitq.layout import ArtifactPaths
    from vitq.orchestration.pipeline import stages_for
    from vitq.recipe import load_recipe

    from conftest import DIGITS

    recipe, paths = load_recipe(DIGITS), ArtifactPaths(root / RECIPE)
    order = []
    for stage in stages_for(recipe):
        for output in stage.outputs(recipe, paths).values():
            folder = output.parent if output.name in ("labels.csv", "images.txt") else None
            names = sorted(p for p in folder.iterdir() if p.is_file()) if folder else [output]
            order += [(p.relative_to(root).as_posix(), stage.name) for p in names]
    return order + [(TARBALL, "release")]


def first_difference(root: Path, golden: dict[str, str], built: dict[str, str]) -> str | None:
    """The first file, in pipeline order, whose bytes differ from the record, with the stage that wrote it."""
    for name, stage in pipeline_order(root):
        if name in golden and golden[name] != built.get(name):
            return f"{name} (written by stage {stage}) differs from {GOLDEN.name}"
    missing = sorted(set(golden) ^ set(built))
    return f"{missing[0]} is in one of the record and the build only" if missing else None


RECORDED_ON = "AuthenticAMD"  # the vendor of the CPU the record was made on (README: Same bytes in any place)


def cpu_vendor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("vendor_id"):
            return line.split(":", 1)[1].strip()
    return "unknown"


@pytest.mark.e2e
def test_the_default_release_has_the_bytes_of_the_committed_record(digits_build):
    """On every machine, whatever its CPU's vendor: until the pins covered MKL's branch, NNPACK, fused attention
    and the init's erfinv, an Intel machine built other bytes than the AMD one the record was made on."""
    root = digits_build.parent
    run_doit("release:digits", artifacts=root)
    built, golden = release_digests(root), read_golden()
    assert first_difference(root, golden, built) is None, (
        f"{first_difference(root, golden, built)}: this machine ({cpu_vendor()}) does not build the default release "
        f"recorded on an {RECORDED_ON} CPU (README, Same bytes in any place)")


def write_golden() -> None:
    """Build the default recipe and its release in a fresh artifacts root, and record their digests."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vitq-golden-") as tmp:
        root = Path(tmp)
        run_doit("build:digits", "release:digits", artifacts=root)
        digests = release_digests(root)
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items())))
    print(f"{GOLDEN}: {len(digests)} files, {TARBALL} {digests[TARBALL]}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    write_golden()
