"""File names: one place, model files from the variant table, no writing outside the artifacts root."""

from __future__ import annotations

import pytest

from vitq.errors import RecipeError
from vitq.layout import ArtifactPaths
from vitq.variants import VARIANTS


def test_model_files_come_from_the_variant_table(tmp_path):
    paths = ArtifactPaths.for_recipe(tmp_path, "deit")
    assert paths.root == tmp_path / "deit"
    for v in VARIANTS:
        if v.file:
            assert paths.file(v.id) == tmp_path / "deit" / v.file
    with pytest.raises(ValueError, match="int8_eager is built in memory"):
        paths.file("int8_eager")


def test_records_and_measurements_live_in_the_build_folder(tmp_path):
    paths = ArtifactPaths.for_recipe(tmp_path, "deit")
    assert paths.samples_labels == tmp_path / "deit" / "samples" / "labels.csv"
    assert {p.name for p in paths.bench_files.values()} == {"bench.json", "bench.md", "bench.png"}
    assert paths.release_dir == tmp_path / "releases"


@pytest.mark.parametrize("name", ["..", ".", "", "a/../../b"])
def test_a_name_that_leaves_the_artifacts_root_is_refused(tmp_path, name):
    with pytest.raises(RecipeError, match="would write outside"):
        ArtifactPaths.for_recipe(tmp_path, name)
