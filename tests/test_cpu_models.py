"""Training bytes on other x86-64 CPUs, without another machine: a shortened digits training (2 epochs on a tenth
of the images, the fp32 stage's own code under vitq's numerical pins) run natively and, under qemu-x86_64, as other
CPU models, whose CPUID (vendor, features) is what torch, MKL and oneDNN choose their kernels by. make test-cpus;
about 5 minutes (each emulated run is ~100x slower than native)."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from vitq.numerics import pinned_environ

from conftest import DIGITS, REPO

pytestmark = pytest.mark.cpus

TRAIN = f"""
import hashlib, tempfile
from pathlib import Path
from vitq.numerics import enter_pinned_stage
from vitq.recipe import load_recipe
folder = Path(tempfile.mkdtemp())
(folder / "short.yaml").write_text("extends: {DIGITS}\\nweights: {{train: {{epochs: 2, holdout: 0.9}}}}\\n")
recipe = load_recipe(folder / "short.yaml")
enter_pinned_stage()
from vitq.model.torch_setup import configure_torch
configure_torch(recipe)
import torch
from vitq.model import networks
from vitq.model.training import train
torch.manual_seed(recipe.weights.train.seed)
model, _ = train(recipe, networks.create_model(recipe))
digest = hashlib.sha256()
for name, value in sorted(model.state_dict().items()):
    digest.update(name.encode() + value.contiguous().numpy().tobytes())
print("WEIGHTS", digest.hexdigest())
"""
MODELS = {"native": None, "amd": "EPYC-Rome", "intel": "Haswell"}  # qemu's AMD Zen 2 and Intel AVX2 models


def weights_digest(cpu: str | None) -> str:
    from vitq.ship.arm64 import runtime_env

    prefix = [str(runtime_env.emulator(print)[0].with_name("qemu-x86_64")), "-cpu", cpu] if cpu else []
    env = {**pinned_environ(os.environ), "VITQ_PROGRESS": "off"}
    proc = subprocess.run([*prefix, sys.executable, "-c", TRAIN], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("WEIGHTS ")]
    assert proc.returncode == 0 and lines, proc.stderr[-2000:]
    return lines[0].split()[1]


@pytest.fixture(scope="module")
def digests() -> dict[str, str]:
    """The weights' sha256 natively and as each emulated CPU model, all trained at once (one core each)."""
    with ThreadPoolExecutor(max_workers=len(MODELS)) as pool:
        return dict(zip(MODELS, pool.map(weights_digest, MODELS.values()), strict=True))


def test_an_emulated_amd_cpu_without_avx512_trains_the_weights_this_host_trains(digests):
    """Before training used the fused AdamW, this failed: the optimizer's square root went through MKL's vector
    math, which picks its code by the CPU's features."""
    assert digests["amd"] == digests["native"]


def test_an_emulated_intel_cpu_trains_the_weights_this_host_trains(digests):
    """Before the pins took MKL's COMPATIBLE branch, ndtri for erfinv in the init and attention without the fused
    kernel, this failed on any host with AMD's CPUID: MKL's AVX2 branch (and its vector math, and ATen's fused
    attention) round differently on Intel CPUs."""
    assert digests["intel"] == digests["native"]
