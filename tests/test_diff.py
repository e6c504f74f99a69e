"""vitq diff: one line per difference between two builds, naming the stage it starts from."""

from __future__ import annotations

import json
import shutil

from vitq.cli import main
from vitq.layout import ArtifactPaths
from vitq.orchestration.runner import run_stage
from vitq.recipe import load_recipe
from vitq.ship.diff import differences, load_manifest
from vitq.ship.release import make_release


def rebuilt_with(tiny_build, tmp_path, extra, stages):
    folder = tmp_path / "b"
    shutil.copytree(tiny_build.root.parent.parent, folder)
    (folder / "tiny.yaml").write_text((folder / "tiny.yaml").read_text() + extra)
    recipe = load_recipe(folder / "tiny.yaml")
    paths = ArtifactPaths.for_recipe(folder / "artifacts", "tiny")
    for stage in stages:
        run_stage(stage, recipe, paths)
    return paths


def test_the_same_build_has_no_differences_and_exits_zero(tiny_build, tmp_path, capsys):
    release = make_release(tiny_build.root, tmp_path / "rel")
    assert main(["diff", str(tiny_build.root), str(release)]) == 0
    assert capsys.readouterr().out.strip().endswith("the same build")


def test_a_changed_quantize_section_is_explained_as_int8_and_everything_after_it(tiny_build, tmp_path, capsys):
    b = rebuilt_with(tiny_build, tmp_path, "quantize: {engine: x86}\n", ["int8", "optimized", "lite", "eval", "manifest"])
    lines = differences(load_manifest(tiny_build.root), load_manifest(b.root), b.root)
    capsys.readouterr()  # the manifest stage printed its table
    assert lines[0] == ('recipe quantize.engine: "qnnpack" -> "x86" '
                        "(rebuilds int8 and everything after it: optimized, lite, eval, manifest)")
    assert main(["diff", str(tiny_build.manifest), str(b.manifest)]) == 1
    assert capsys.readouterr().out.splitlines()[0] == lines[0]


def test_versions_samples_and_artifacts_name_where_they_start(tiny_build, tmp_path):
    a = json.loads(tiny_build.manifest.read_text())
    b = json.loads(tiny_build.manifest.read_text())
    b["versions"]["onnxruntime"] = "0.0.1"
    b["samples"]["sha256"] = "0" * 64
    b["artifacts"] = [x for x in b["artifacts"] if x["name"] != "pte"]
    b["artifacts"][1]["sha256"] = "1" * 64
    lines = differences(a, b, tiny_build.root)
    assert "version onnxruntime: " in lines[0] and "(rebuilds onnx_fp32 and everything after it: onnx_int8, eval, manifest)" in lines[0]
    assert lines[1].startswith("samples: the sample images or labels differ (rebuilds samples and everything after it: lite")
    assert lines[2].startswith("artifact int8 (int8.pt): other bytes") and "rebuilds int8 and everything after it" in lines[2]
    assert lines[3] == "artifact pte: only in A"


def test_a_figure_measured_differently_from_the_same_files_is_one_line_naming_the_runtimes_kernels(tiny_build):
    a = load_manifest(tiny_build.root)
    b = json.loads(json.dumps(a))
    b["accuracy"]["onnx_int8"]["max_abs_logit_diff"] += 0.01
    [line] = differences(a, b, tiny_build.root)
    assert line.startswith("measured onnx_int8 max_abs_logit_diff: ") and "kernels on another CPU" in line
    assert "rebuilds eval and everything after it: manifest" in line
