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


def test_markdown_says_how_int8_pt_was_made_where_the_build_chose(tiny_build):
    manifest = json.loads(tiny_build.manifest.read_text())
    assert "TorchScript `int8.pt`: scripted." in markdown(manifest)  # export.method auto picked script
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    int8["torchscript"] = {"method": "trace", "keep_float": [f"blocks.{i}.attn.qk" for i in range(6)]}
    assert ("TorchScript `int8.pt`: traced; 6 Linear(s) kept float, as the model's code reads their weight: "
            "`blocks.0.attn.qk`, `blocks.1.attn.qk`, `blocks.2.attn.qk`, `blocks.3.attn.qk` and 2 more.") in markdown(manifest)


def test_human_size():
    assert (human_size(999), human_size(1500), human_size(89_090_977)) == ("999 B", "1.5 KB", "89.1 MB")
