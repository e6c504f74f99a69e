"""What ``vitq verify --arch arm64`` runs on: the emulated CPU models (one per XNNPACK kernel family by default) and
the runtimes (the pinned ones, and ExecuTorch releases apps ship today). Data only; torch-free."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version

from vitq.errors import VitqError

PINNED = "pinned"


@dataclass(frozen=True)
class CpuModel:
    """A CPU model qemu emulates (``-cpu NAME``), the kernel family XNNPACK picks on it, and the hardware
    capabilities the emulated process must see (and must not see) for that family to be the one taken."""

    name: str
    family: str
    phones: str
    features: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()


# One per kernel family XNNPACK dispatches on (NEON, dot product, i8mm + SVE, SME2), oldest first.
CPU_MODELS = (
    CpuModel("cortex-a53", "NEON only (ARMv8.0)", "Cortex-A53/A72 phones", ("asimd",), ("asimddp", "sve", "sme")),
    CpuModel("cortex-a76", "dot product (ARMv8.2)", "Cortex-A76/A78/A55 phones", ("asimd", "asimddp"),
             ("i8mm", "sve", "sme")),
    CpuModel("neoverse-v1", "i8mm + SVE", "Cortex-X1/X2/A710 phones", ("asimddp", "i8mm", "sve"), ("sme",)),
    CpuModel("max", "SME2", "2025 Arm C1 cores", ("asimddp", "i8mm", "sve", "sme", "sme2")),
)
DEFAULT_CPUS = tuple(cpu.name for cpu in CPU_MODELS)
BY_NAME = {cpu.name: cpu for cpu in CPU_MODELS}

# The emulator, from Debian: a statically linked qemu-user, unpacked, never installed. 11.1: qemu 10.0's `max` has
# SME but not SME2 (no HWCAP2_SME2 for the process), and 7.2's SME computes wrong (the known-answer check fails).
QEMU = {"package": "qemu-user", "version": "1:11.1.3+ds-2~bpo13+1", "suite": "trixie-backports"}
# Python 3.11 for aarch64 and the C libraries the wheels need, from Debian bookworm, unpacked into a folder.
GUEST_DEBS = ("libc6", "libgcc-s1", "gcc-12-base", "libstdc++6", "libgomp1", "zlib1g", "libexpat1", "libffi8",
              "libssl3", "libbz2-1.0", "liblzma5", "libsqlite3-0", "libncursesw6", "libtinfo6", "libreadline8",
              "libuuid1", "libcrypt1", "libnsl2", "libtirpc3", "libdb5.3", "libgssapi-krb5-2", "libk5crypto3",
              "libkeyutils1", "libkrb5-3", "libkrb5support0", "libcom-err2", "python3.11-minimal",
              "libpython3.11-minimal", "libpython3.11-stdlib")
# What importing torch, ExecuTorch's runtime and onnxruntime needs besides them (pure Python, or small binaries).
IMPORT_DEPS = ("typing_extensions==4.16.0", "filelock==4.3.2", "sympy==1.14.0", "mpmath==1.3.0", "networkx==3.6.1",
               "jinja2==3.1.6", "markupsafe==3.0.4", "fsspec==2026.9.0", "packaging==26.4", "ruamel.yaml==0.19.1",
               "flatbuffers==25.12.19", "tabulate==0.10.0", "tqdm==4.70.1", "pyyaml==6.0.4", "protobuf==7.36.2")
# torch's wheels for Linux are CUDA builds: `import torch` loads these libraries even to run on a CPU (never used).
# One set serves torch 2.12 and 2.14 (the loader needs the sonames only). CUPTI has no aarch64 wheel: a stub
# (runtime_env.build_stub) stands in for it on both architectures.
CUDA_LIBRARIES = ("nvidia-cuda-runtime==13.0.96", "nvidia-cublas==13.1.1.3", "nvidia-cufft==12.0.0.61",
                  "nvidia-curand==10.4.0.35", "nvidia-cusparse==12.6.3.3", "nvidia-cufile==1.15.1.6",
                  "nvidia-nvjitlink==13.0.88", "nvidia-cuda-nvrtc==13.0.88", "nvidia-cudnn-cu13==9.24.0.43",
                  "nvidia-cusparselt-cu13==0.8.1", "nvidia-nccl-cu13==2.32.6", "nvidia-nvshmem-cu13==3.4.5")
STUBBED = ("libcupti.so.13",)
ZIG = "ziglang==0.17.0"  # a C toolchain for both architectures, from the package index: builds the stub


@dataclass(frozen=True)
class Runtime:
    """A set of runtime versions a program is checked in: ``pinned`` (vitq's own: the .pte, .ptl and ONNX files), or
    an ExecuTorch release with the torch it was built against (the .pte only)."""

    name: str
    packages: tuple[str, ...]  # name==version of each binary wheel
    formats: tuple[str, ...]  # the manifest formats it runs

    @property
    def key(self) -> str:
        """A folder name that changes with any version in it."""
        return "-".join(p.replace("==", "") for p in self.packages)


# ExecuTorch releases apps ship, with the torch each was built against (its runtime fails on another torch).
EXECUTORCH_RELEASES = {"1.5.1": "2.14.1"}
MOBILE_FORMATS = ("executorch", "pytorch-lite", "onnx")


def pinned() -> Runtime:
    """vitq's own runtimes, at the versions installed beside it (pyproject.toml pins them)."""
    names = ("torch", "executorch", "onnxruntime", "numpy")
    return Runtime(PINNED, tuple(f"{n}=={version(n)}" for n in names), MOBILE_FORMATS)


def runtime(spec: str) -> Runtime:
    """``pinned`` or ``executorch==X.Y.Z`` (one of EXECUTORCH_RELEASES)."""
    if spec == PINNED:
        return pinned()
    name, _, wanted = spec.partition("==")
    if name.strip() != "executorch" or wanted.strip() not in EXECUTORCH_RELEASES:
        known = ", ".join([PINNED, *(f"executorch=={v}" for v in EXECUTORCH_RELEASES)])
        raise VitqError(f"--runtime {spec}: unknown runtime; known: {known}")
    wanted = wanted.strip()
    packages = (f"torch=={EXECUTORCH_RELEASES[wanted]}", f"executorch=={wanted}", f"numpy=={version('numpy')}")
    return Runtime(f"executorch=={wanted}", packages, ("executorch",))


def cpu_models(names: list[str] | None, known: list[str] | None = None) -> list[CpuModel]:
    """The CPU models asked for (default: one per kernel family). ``known``: every model the emulator has; a name
    outside it is refused in one line."""
    chosen = []
    for name in names or DEFAULT_CPUS:
        if known is not None and name not in known:
            raise VitqError(f"--cpu {name}: the emulator has no such CPU model; it has {', '.join(known)}")
        chosen.append(BY_NAME.get(name, CpuModel(name, "chosen by --cpu", "")))
    return chosen
