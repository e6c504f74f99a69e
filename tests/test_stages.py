"""Each stage as a plain function on a tiny real timm ViT, run as vitq.orchestration.runner runs it: no doit involved."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from vitq.errors import RecipeError
from vitq.model import networks
from vitq.model.convert import quantize_dynamic_int8
from vitq.model.runtimes import load_lite, load_torchscript
from vitq.recipe import load_recipe

from conftest import write_recipe
from helpers_models import TINY_TIMM, build, make_images, tiny_recipe

INPUT = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
CHAIN = ["fp32", "samples", "int8", "optimized", "lite"]


def test_fp32_stage_writes_the_seeded_weights_as_safetensors(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = build(recipe, tmp_path / "out", ["fp32"])
    torch.manual_seed(7)
    expected = networks.create_model(recipe).state_dict()
    saved = load_file(str(paths.file("fp32")))
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)


def test_fp32_weights_with_shared_tensors_are_saved_each_under_its_name(tmp_path):
    """timm's CoaT shares one conv between blocks: safetensors refuses shared tensors (the fp32 stage crashed)."""
    from vitq.stages.fp32 import _unshared

    shared = torch.nn.Linear(4, 4)
    state = torch.nn.Sequential(shared, torch.nn.ReLU(), shared).state_dict()
    with pytest.raises(RuntimeError, match="share memory"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "plain.safetensors"))
    save_file(_unshared(state), str(tmp_path / "w.safetensors"))
    saved = load_file(str(tmp_path / "w.safetensors"))
    assert saved.keys() == state.keys() and all(torch.equal(saved[k], state[k]) for k in state)


def test_chain_produces_int8_torchscript_an_optimized_file_and_a_loadable_lite_file(tmp_path):
    recipe = tiny_recipe(tmp_path)
    paths = build(recipe, tmp_path / "out", CHAIN)
    reference = networks.load_fp32(recipe, paths.file("fp32"))
    scripted = load_torchscript(paths.file("int8"))
    assert "quantized::linear_dynamic" in str(scripted.inlined_graph)
    mobile = load_lite(paths.file("lite"))
    with torch.no_grad():
        want = reference(INPUT)
        for got in (scripted(INPUT), load_torchscript(paths.file("optimized"))(INPUT), mobile(INPUT)):
            assert got.shape == (3, 5)
            assert (got - want).abs().max() < 0.05 * want.abs().max()
    assert paths.file("lite").stat().st_size < paths.file("fp32").stat().st_size


def test_float16_dynamic_quantization_also_goes_through(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="quantize: {dtype: float16, engine: x86}\n")
    paths = build(recipe, tmp_path / "out", CHAIN)
    assert load_lite(paths.file("lite"))(INPUT).shape == (3, 5)


def test_without_optimize_the_lite_file_is_made_from_int8_and_trace_matches_eager(tmp_path):
    recipe = tiny_recipe(tmp_path, extra="export: {method: trace}\nmobile: {optimize: false}\n")
    paths = build(recipe, tmp_path / "out", CHAIN)
    assert not (paths.root / "int8.optimized.pt").exists()
    eager = quantize_dynamic_int8(recipe, networks.load_fp32(recipe, paths.file("fp32")))
    with torch.no_grad():
        assert torch.allclose(load_lite(paths.file("lite"))(INPUT), eager(INPUT), atol=1e-5)


def test_mobile_blocklist_is_passed_to_optimize_for_mobile(tmp_path):
    from vitq.orchestration.runner import run_stage

    recipe = tiny_recipe(tmp_path, extra="mobile: {blocklist: [REMOVE_DROPOUT, FUSE_ADD_RELU]}\n")
    paths = build(recipe, tmp_path / "out", ["fp32", "int8"])
    summary, _, _ = run_stage("optimized", recipe, paths)
    assert "skipping FUSE_ADD_RELU, REMOVE_DROPOUT" in summary


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_file_weights_round_trip(tmp_path, suffix):
    source = tiny_recipe(tmp_path / "a")
    torch.manual_seed(123)
    state = networks.create_model(source).state_dict()
    weights = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(weights))
    else:
        torch.save({"model": state}, str(weights))
    make_images(tmp_path / "b" / "images")
    recipe = load_recipe(write_recipe(tmp_path / "b", "fromfile", TINY_TIMM.format(extra="").replace(
        "{random: {seed: 7}}", f"{{file: {weights}}}")))
    paths = build(recipe, tmp_path / "out", ["fp32"])
    saved = load_file(str(paths.file("fp32")))
    assert all(torch.equal(saved[k], state[k]) for k in state)


def _recipe_with(tmp_path, name, old, new):
    make_images(tmp_path / "images")
    return load_recipe(write_recipe(tmp_path, name, TINY_TIMM.format(extra="").replace(old, new)))


def test_missing_weight_file_names_recipe_and_field(tmp_path):
    recipe = _recipe_with(tmp_path, "nofile", "{random: {seed: 7}}", "{file: missing.safetensors}")
    with pytest.raises(RecipeError, match=r"nofile.yaml: weights.file: file not found: .*missing.safetensors"):
        build(recipe, tmp_path / "out", ["fp32"])


def test_weight_file_of_another_model_is_refused(tmp_path):
    weights = tmp_path / "other.safetensors"
    save_file({"head.weight": torch.zeros(3, 3)}, str(weights))
    recipe = _recipe_with(tmp_path, "wrong", "{random: {seed: 7}}", f"{{file: {weights}}}")
    with pytest.raises(RecipeError, match="weights.file: other.safetensors does not fit vit_tiny_patch16_224"):
        build(recipe, tmp_path / "out", ["fp32"])


def test_unknown_timm_model_suggests_a_name(tmp_path):
    recipe = _recipe_with(tmp_path, "typo", "vit_tiny_patch16_224", "deit_tiny_patch16_244")
    with pytest.raises(RecipeError, match=r"model.name: unknown timm model 'deit_tiny_patch16_244'; did you mean 'deit_tiny_patch16_224'"):
        build(recipe, tmp_path / "out", ["fp32"])


def test_any_timm_image_classifier_is_accepted_by_what_it_is_not_by_its_name(tmp_path):
    """No name check: a MobileViT (convolutions and transformer blocks) builds its fp32 reference like a ViT."""
    recipe = _recipe_with(tmp_path, "mvit", "name: vit_tiny_patch16_224\n  kwargs: {img_size: 32, patch_size: 8, "
                          "embed_dim: 32, depth: 1, num_heads: 2, num_classes: 5}", "name: mobilevit_xxs\n  kwargs: {num_classes: 5}")
    paths = build(recipe, tmp_path / "out", ["fp32"])
    assert len(load_file(str(paths.file("fp32")))) > 100  # a MobileViT's tensors, not a ViT's


# ---------------------------------------------------------------- bad input: one line, nothing touched


def _append_label(folder, row):
    labels = folder / "images" / "labels.csv"
    labels.write_text(labels.read_text() + row + "\n")


STAGE_ERRORS = [
    ("missing weight file", lambda r: r.replace("{random: {seed: 7}}", "{file: gone.safetensors}"), None,
     "tiny.yaml: weights.file: file not found: "),
    ("corrupt weight file", lambda r: r.replace("{random: {seed: 7}}", "{file: junk.safetensors}"),
     lambda d: (d / "junk.safetensors").write_bytes(b"\x00" * 100), "tiny.yaml: weights.file: cannot read junk.safetensors"),
    ("unreadable .pth", lambda r: r.replace("{random: {seed: 7}}", "{file: junk.pth}"),
     lambda d: (d / "junk.pth").write_text("hello"), "tiny.yaml: weights.file: cannot read junk.pth"),
    ("sample folder missing", lambda r: r.replace("{dir: images,", "{dir: nowhere,"), None,
     "tiny.yaml: samples.dir: folder not found: "),
    ("labels name a missing file", None, lambda d: _append_label(d, "ghost.png,1"),
     "labels.csv: ghost.png: image file not found in "),
    ("class out of range", None, lambda d: _append_label(d, "img1.png,7"), "labels.csv: img1.png: class (7,) out of range 0..4"),
    ("labels not a number", None, lambda d: _append_label(d, "img1.png,cat"), "labels.csv: line 8: class must be an integer index"),
    ("non-image file", None, lambda d: ((d / "images" / "notes.png").write_text("hi"), _append_label(d, "notes.png,1")),
     "notes.png: not a readable image"),
    ("corrupt image", None, lambda d: (d / "images" / "img3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really"),
     "img3.png: not a readable image"),
    ("empty sample folder", lambda r: r.replace("{dir: images, labels: images/labels.csv}", "{dir: empty, labels: empty/labels.csv}"),
     lambda d: (d / "empty").mkdir(), "empty/labels.csv: labels file not found"),
]


@pytest.mark.parametrize("edit_recipe, prepare, message", [e[1:] for e in STAGE_ERRORS], ids=[e[0] for e in STAGE_ERRORS])
def test_bad_input_is_one_line_naming_the_file_and_leaves_artifacts_untouched(tiny_build, tmp_path, edit_recipe, prepare, message):
    import shutil

    from vitq.errors import VitqError
    from vitq.fileio import sha256_file

    folder, out = tmp_path / "recipe", tmp_path / "artifacts"
    shutil.copytree(tiny_build.root.parent.parent, folder, ignore=shutil.ignore_patterns("artifacts"))
    shutil.copytree(tiny_build.root.parent, out)
    recipe_file = folder / "tiny.yaml"
    recipe_file.write_text(recipe_file.read_text() + "executorch: {enabled: false}\n")  # spares each case an export
    if edit_recipe:
        recipe_file.write_text(edit_recipe(recipe_file.read_text()))
    if prepare:
        prepare(folder)
    before = {p.name: sha256_file(p) for p in (out / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}
    with pytest.raises(VitqError) as info:
        build(load_recipe(recipe_file), out)
    assert "\n" not in str(info.value) and message in str(info.value)
    after = {p.name: sha256_file(p) for p in (out / "tiny").glob("*") if p.is_file() and p.suffix != ".jsonl"}
    assert after == before


# ---------------------------------------------------------------- the ExecuTorch program


def test_the_pte_stage_writes_a_program_executorch_runs_and_records_what_xnnpack_took(tiny_build):
    import json

    import numpy as np

    from vitq.model.runtimes import load_pte

    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    delegation = json.loads(tiny_build.delegation.read_text())
    assert delegation["backend"] == "XnnpackBackend" and delegation["delegated_subgraphs"] == 1
    assert delegation["portable_nodes"] == 0, delegation["portable_operators"]  # the whole ViT in one XNNPACK delegate
    reference = networks.load_fp32(recipe, tiny_build.file("fp32"))
    with torch.no_grad():
        want = reference(INPUT).numpy()
    got = load_pte(tiny_build.file("pte"))(INPUT)
    assert got.shape == (3, 5) and np.abs(got - want).max() < 0.05 * np.abs(want).max()
    assert tiny_build.file("pte").stat().st_size < 0.7 * tiny_build.file("fp32").stat().st_size


def test_a_lone_candidate_far_off_fp32_is_one_line_naming_the_strategy_field_and_what_to_try(tiny_build):
    """The .pte stage's own sanity check (one sample, 10 % of the largest logit), against a model whose head is
    negated: the program then computes the opposite logits, as a badly quantized one might."""
    from vitq.model.samples import read_samples
    from vitq.stages import pte

    recipe = load_recipe(tiny_build.root.parent.parent / "tiny.yaml")
    model = networks.load_fp32(recipe, tiny_build.file("fp32"))
    sample = read_samples(tiny_build.samples_labels)[0].path
    assert pte._check(recipe, model, "dynamic_int8", tiny_build.file("pte"), sample) < 0.05  # the real model: close
    with torch.no_grad():
        model.head.weight.neg_()
        model.head.bias.neg_()
    with pytest.raises(RecipeError) as info:
        pte._check(recipe, model, "dynamic_int8", tiny_build.file("pte"), sample)
    line = str(info.value)
    assert "\n" not in line and line.startswith(f"{recipe.path}: executorch.quantize: the dynamic_int8 program int8.pte "
                                                f"is off: on {sample.name} its logits differ from the fp32 model's by ")
    assert line.endswith("try executorch: {quantize: none}, or switch the .pte off with executorch: {enabled: false}")


@pytest.mark.parametrize(("weights", "judged_by_gates"), [("{random: {seed: 7}}", False), ("{file: fp32.safetensors}", True)])
def test_among_candidates_the_one_sample_check_steps_aside_only_where_the_gates_can_judge(tiny_build, tmp_path,
                                                                                          weights, judged_by_gates):
    """Among candidates with trained weights the accuracy gates judge every program on every sample, so one image
    must not refuse it; with random weights no gate applies, so the far-off program is refused (the .pte stage then
    records a failed candidate and the next one ships)."""
    import shutil

    from vitq.model.samples import read_samples
    from vitq.stages import pte

    shutil.copy(tiny_build.file("fp32"), tmp_path / "fp32.safetensors")
    base = tiny_build.root.parent.parent / "tiny.yaml"
    recipe = load_recipe(write_recipe(tmp_path, "listed", f"extends: {base}\nweights: {weights}\n"
                                      "executorch: {quantize: [dynamic_int8, none]}\n"))
    assert not recipe.lone_pte_candidate and recipe.accuracy_meaningful == judged_by_gates
    model = networks.load_fp32(recipe, tiny_build.file("fp32"))
    with torch.no_grad():
        model.head.weight.neg_()
        model.head.bias.neg_()
    sample = read_samples(tiny_build.samples_labels)[0].path
    if judged_by_gates:
        assert pte._check(recipe, model, "dynamic_int8", tiny_build.file("pte"), sample) > 0.05
    else:
        with pytest.raises(RecipeError, match="executorch.quantize: the dynamic_int8 program int8.pte is off"):
            pte._check(recipe, model, "dynamic_int8", tiny_build.file("pte"), sample)


def test_a_model_torch_export_cannot_handle_is_one_line_naming_the_recipe_and_what_to_try(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Dynamic control flow is not supported\nlong explanation")

    recipe = tiny_recipe(tmp_path)
    build(recipe, tmp_path / "out", ["fp32", "samples"])
    monkeypatch.setattr(torch.export, "export", refuse)
    with pytest.raises(RecipeError) as info:
        build(recipe, tmp_path / "out", ["pte"])
    line = str(info.value)
    assert "\n" not in line and line.startswith(str(tmp_path / "tiny.yaml")) and ": executorch: exporting vit_tiny_patch16_224 for ExecuTorch failed (Dynamic control flow is not supported)" in line
    assert "Dynamic control flow is not supported" in line and "executorch: {enabled: false}" in line
    assert not (tmp_path / "out" / "tiny" / "int8.pte").exists()
