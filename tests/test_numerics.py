"""CPU-independent numerics: which stages run pinned, under what, and how kernel-dependent figures are recorded."""

from __future__ import annotations

import pytest

from vitq.build.fingerprint import stage_fingerprint
from vitq.build.pipeline import STAGES, stage_named
from vitq.build.runner import HASH_SEED, stage_environ
from vitq.numerics import PINNED_ENV, error_step, is_pinned, pinned_environ, recorded_error
from vitq.recipe import load_recipe

from conftest import DIGITS


def test_training_and_evaluation_run_pinned_and_nothing_else_does():
    assert {s.name for s in STAGES if s.pinned} == {"fp32", "eval"}


def test_a_pinned_stage_starts_with_the_pins_over_whatever_the_caller_set():
    caller = {"PATH": "/bin", "ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO"}
    env = stage_environ("fp32", caller)
    assert is_pinned(env) and env["PATH"] == "/bin" and env["PYTHONHASHSEED"] == HASH_SEED
    assert env["ATEN_CPU_CAPABILITY"] == "avx2" and env["MKL_CBWR"] == "AVX2,STRICT"
    assert stage_environ("int8", caller) == {**caller, "PYTHONHASHSEED": HASH_SEED}  # fast kernels elsewhere
    assert pinned_environ({}) == PINNED_ENV


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
