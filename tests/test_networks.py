"""Hub weights: without network the one-line RecipeError comes at once, and the Hugging Face cache still works."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import timm  # imported here so that the timings below measure the calls, not imports
import torch
from transformers import ViTConfig, ViTForImageClassification

from vitq.errors import RecipeError
from vitq.model import networks
from vitq.recipe import load_recipe

from conftest import write_recipe
from helpers_models import TINY_TIMM

TIMM_KWARGS = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2, "num_classes": 5}
TIMM_HUB_ID = "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k"  # where timm looks for vit_tiny_patch16_224
HF_RECIPE = """\
model: {{source: transformers, name: {name}}}
weights: hub
preprocess: {{resize: 36, crop: 32, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5]}}
samples: {{dir: images, labels: images/labels.csv}}
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty Hugging Face cache (huggingface_hub reads HF_HOME once, at import)."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    return home / "hub"


@pytest.fixture(params=["HF_HUB_OFFLINE=1", "no network"])
def offline(request, monkeypatch) -> str:
    """Offline by the environment variable, or because the hub endpoint refuses connections."""
    from huggingface_hub import constants

    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    if request.param == "HF_HUB_OFFLINE=1":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        return "offline: HF_HUB_OFFLINE is set"
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    return "no network: cannot reach 127.0.0.1:"


def in_hub_cache(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` at branch main, in huggingface_hub's cache layout."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def timm_recipe(folder: Path):
    return load_recipe(write_recipe(folder, "tiny", TINY_TIMM.format(extra="").replace("{random: {seed: 7}}", "hub")))


def hf_recipe(folder: Path, name: str):
    return load_recipe(write_recipe(folder, "tiny_hf", HF_RECIPE.format(name=name)))


def expect_fast_one_line_error(recipe, hub_id: str, why: str) -> str:
    start = time.monotonic()
    with pytest.raises(RecipeError) as info:
        networks.pretrained_model(recipe)
    elapsed = time.monotonic() - start
    text = str(info.value)
    assert elapsed < 5, f"{elapsed:.1f} s"
    assert "\n" not in text
    assert f": weights: hub weights {hub_id} are not available ({why}" in text
    assert "weights: {file: model.safetensors}" in text and "HF_HOME" in text
    return text


def test_missing_timm_hub_weights_fail_at_once_offline(tmp_path, hub_cache, offline):
    expect_fast_one_line_error(timm_recipe(tmp_path), TIMM_HUB_ID, offline)


def test_missing_transformers_hub_weights_fail_at_once_offline(tmp_path, hub_cache, offline):
    expect_fast_one_line_error(hf_recipe(tmp_path, "google/vit-base-patch16-224"), "google/vit-base-patch16-224", offline)


def test_the_offline_switch_ends_with_the_call(tmp_path, hub_cache, offline):
    from huggingface_hub import constants

    with pytest.raises(RecipeError):
        networks.pretrained_model(timm_recipe(tmp_path))
    assert constants.HF_HUB_OFFLINE is False


def test_probe_finds_a_closed_port_unreachable_at_once():
    start = time.monotonic()
    assert not networks.hub_reachable("127.0.0.1", closed_port())
    assert time.monotonic() - start < 1


def test_probe_finds_a_listening_port_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert networks.hub_reachable("127.0.0.1", server.getsockname()[1])


def test_probe_gives_up_on_an_unknown_host_within_its_budget():
    start = time.monotonic()
    assert not networks.hub_reachable("no-such-host.invalid", 443, timeout=1.0)
    assert time.monotonic() - start < 2


def test_probe_targets_the_proxy_when_one_applies(monkeypatch):
    for var in ("NO_PROXY", "no_proxy", "https_proxy"):
        monkeypatch.delenv(var, raising=False)
    assert networks.hub_probe_target("https://huggingface.co") == ("huggingface.co", 443)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert networks.hub_probe_target("https://huggingface.co") == ("proxy.example", 3128)


def test_cached_timm_weights_load_offline(tmp_path, hub_cache, offline):
    from safetensors.torch import save_file

    saved = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TIMM_KWARGS).state_dict()
    save_file(saved, in_hub_cache(hub_cache, TIMM_HUB_ID) / "model.safetensors")
    loaded = networks.pretrained_model(timm_recipe(tmp_path)).state_dict()
    # timm keeps its own head when num_classes differs from the hub's 1000; everything else is ours
    assert torch.equal(loaded["patch_embed.proj.weight"], saved["patch_embed.proj.weight"])
    assert torch.equal(loaded["blocks.0.attn.qkv.weight"], saved["blocks.0.attn.qkv.weight"])


def tiny_vit():
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=64, num_labels=5)
    return ViTForImageClassification(config).eval()


def test_cached_transformers_weights_load_offline(tmp_path, hub_cache, offline):
    vit = tiny_vit()
    vit.save_pretrained(in_hub_cache(hub_cache, "vitq-test/tiny-vit"))
    loaded = networks.pretrained_model(hf_recipe(tmp_path, "vitq-test/tiny-vit"))
    assert_same_model(loaded, vit, torch.rand(2, 3, 32, 32))


def test_transformers_weights_from_a_local_folder_load_offline(tmp_path, hub_cache, offline):
    vit = tiny_vit()
    vit.save_pretrained(tmp_path / "tiny-vit")
    loaded = networks.pretrained_model(hf_recipe(tmp_path, str(tmp_path / "tiny-vit")))
    assert_same_model(loaded, vit, torch.rand(1, 3, 32, 32))


def assert_same_model(loaded, vit, image):
    """The very same weights; the logits equal up to float rounding only: loaded weights are memory-mapped, and
    MKL picks kernels (and their last bits) by memory alignment unless a process pins it (vitq.numerics)."""
    saved = vit.state_dict()
    weights = loaded.model.state_dict()
    assert weights.keys() == saved.keys() and all(torch.equal(weights[k], saved[k]) for k in saved)
    torch.testing.assert_close(loaded(image), vit(pixel_values=image).logits, rtol=1e-5, atol=1e-6)


def test_any_transformers_image_classifier_class_builds_from_its_default_config_and_kwargs(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, "mvit", HF_RECIPE.format(name="MobileViTForImageClassification")
                                      .replace("weights: hub", "weights: {random: {seed: 0}}")
                                      .replace("model: {source: transformers, name: MobileViTForImageClassification}",
                                               "model: {source: transformers, name: MobileViTForImageClassification, "
                                               "kwargs: {num_labels: 5, image_size: 32}}")))
    model = networks.create_model(recipe)
    assert type(model.model).__name__ == "MobileViTForImageClassification"
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 5)  # plain logits, as every runtime wants


def test_a_misspelt_transformers_class_gets_a_did_you_mean(tmp_path, hub_cache, offline):
    recipe = load_recipe(write_recipe(tmp_path, "typo", HF_RECIPE.format(name="MobileVitForImageClassification")
                                      .replace("weights: hub", "weights: {random: {seed: 0}}")))
    with pytest.raises(RecipeError, match="model.name: cannot get the config of 'MobileVitForImageClassification' "
                                          r"\(.*\); did you mean MobileViTForImageClassification"):
        networks.create_model(recipe)
