"""report.md and the end-of-build table: one row per variant in table order, gates per variant."""

from __future__ import annotations

import json

from vitq.check.report import human_size, markdown, table
from vitq.variants import VARIANTS


def test_the_table_has_one_row_per_variant_in_table_order_with_files_and_gates(tiny_build):
    manifest = json.loads(tiny_build.manifest.read_text())
    rows = [line for line in table(manifest).splitlines()[2:]]
    assert [r.split(" | ")[0].lstrip("| ") for r in rows] == [v.id for v in VARIANTS if v.id in manifest["accuracy"]]
    lite = next(r for r in rows if r.startswith("| lite |"))
    assert "| int8.ptl |" in lite and lite.endswith("| n/a |")  # random weights: accuracy gates do not apply
    assert "| (in memory) |" in next(r for r in rows if r.startswith("| int8_eager |"))
    assert next(r for r in rows if r.startswith("| onnx_fp32 |")).endswith("| pass |")


def test_markdown_names_the_mobile_artifact_the_checks_and_the_versions(tiny_build):
    manifest = json.loads(tiny_build.manifest.read_text())
    text = markdown(manifest)
    assert text.startswith("# tiny 0.0.0: PASSED")
    assert "Mobile artifact: `int8.ptl`" in text and "untrained random weights" in text
    assert "## Checks" in text and "| onnx_fp32.agreement |" in text and "scikit-learn" in text
    assert text == tiny_build.report.read_text()


def test_human_size():
    assert (human_size(999), human_size(1500), human_size(89_090_977)) == ("999 B", "1.5 KB", "89.1 MB")
