"""CPU-independent numerics: which stages run pinned, under what, and how kernel-dependent figures are recorded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vitq.numerics import PINNED_ENV, error_step, is_pinned, pinned_environ, recorded_error
from vitq.orchestration.fingerprint import stage_fingerprint
from vitq.orchestration.pipeline import STAGES, stage_named
from vitq.orchestration.runner import HASH_SEED, stage_environ
from vitq.recipe import load_recipe

from conftest import DIGITS


def test_training_and_evaluation_run_pinned_and_nothing_else_does():
    assert {s.name for s in STAGES if s.pinned} == {"fp32", "eval"}


def test_a_pinned_stage_starts_with_the_pins_over_whatever_the_caller_set():
    caller = {"PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"}
    env = stage_environ("fp32", caller)
    assert is_pinned(env) and env["PATH"] == "/bin" and env["PYTHONHASHSEED"] == HASH_SEED
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "COMPATIBLE,STRICT"
    assert stage_environ("int8", caller) == {**caller, "PYTHONHASHSEED": HASH_SEED}  # fast kernels elsewhere
    assert pinned_environ({}) == PINNED_ENV


def test_a_pinned_process_builds_models_without_the_cpu_dependent_kernels():
    """NNPACK and oneDNN tile by cache size, fused attention and MKL's AVX2 branch round by CPU vendor."""
    probe = ("import torch, timm\nfrom vitq.numerics import enter_pinned_stage\nenter_pinned_stage()\n"
             "m = timm.create_model('vit_tiny_patch16_224', pretrained=False, depth=1)\n"
             "print(torch._C._get_nnpack_enabled(), torch.backends.mkldnn.enabled, torch.backends.cuda.flash_sdp_enabled(),"
             " m.blocks[0].attn.fused_attn)")
    pinned = subprocess.run([sys.executable, "-c", probe], env=pinned_environ(os.environ), capture_output=True,
                            text=True, check=True)
    unpinned = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert pinned.stdout.split() == ["False"] * 4 and unpinned.stdout.split() == ["True"] * 4


def test_truncated_normal_init_draws_through_ndtri_with_erfinvs_values():
    import torch
    from timm.layers import trunc_normal_  # what timm's models initialise with (torch's own redraws normals)

    from vitq.model.portable_init import portable_init

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return trunc_normal_(torch.empty(50_000), std=0.02)

    plain = draw(0)
    with portable_init():
        portable = draw(0)
    torch.manual_seed(0)
    uniform = torch.empty(50_000).uniform_(-1, 1)  # what trunc_normal_ draws for bounds of 100 std
    assert torch.equal(portable, (torch.special.ndtri((uniform + 1) * 0.5) * (1 / 2**0.5) * (0.02 * 2**0.5)).clamp(-2, 2))
    assert torch.allclose(portable, plain, rtol=1e-5, atol=1e-8) and not torch.equal(portable, plain)


def test_the_pins_are_part_of_a_pinned_stages_fingerprint():
    recipe = load_recipe(DIGITS)
    assert "numerics" in stage_fingerprint(stage_named("fp32"), recipe)
    assert "numerics" not in stage_fingerprint(stage_named("int8"), recipe)


@pytest.mark.parametrize(("measured", "recorded"), [
    (0.0, 0.0), (1.4e-6, 1e-5), (1e-5, 1e-5), (1.01e-5, 2e-5), (0.0123456, 0.013), (0.013, 0.013), (0.1, 0.1),
    (0.31, 0.31), (7.77, 7.8), (123.4, 130.0), (0.000991, 0.001),
])
def test_an_error_figure_is_recorded_as_an_upper_bound_at_two_significant_digits(measured, recorded):
    assert recorded_error(measured) == recorded
    assert recorded_error(recorded) == recorded  # recording again changes nothing
    assert recorded >= measured


def test_kernel_noise_below_a_step_does_not_change_a_recorded_figure():
    for value in (0.0123, 2.2e-6, 0.2871):
        step = error_step(recorded_error(value))
        assert recorded_error(value * (1 + 1e-6)) == recorded_error(value * (1 - 1e-6)) == recorded_error(value)
        assert step > 0
