"""Prepares a runtime to run mobile files in, once, under the user's cache folder, keyed by every version in it:
an aarch64 one (Debian's python3.11 for arm64 and a statically linked qemu-user, unpacked, never installed; the
aarch64 wheels of torch, ExecuTorch and onnxruntime, installed for that platform by this host's pip), or an x86-64
one for another ExecuTorch release. Nothing is installed system-wide and nothing needs root: apt runs with a
private configuration inside the cache.

Each piece is assembled in a temporary folder and renamed into place when complete, so a killed preparation is
redone, never half-used. Every failure (no apt, no network, no disk) is one line saying what to do.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vitq.errors import VitqError
from vitq.ship.arm64 import targets

CACHE_VAR = "VITQ_RUNTIME_CACHE"
QEMU_VAR = "VITQ_QEMU"
NEEDED_GB = 8  # an aarch64 runtime with torch's CUDA libraries, and the downloads on the way
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
DEBIAN = "http://deb.debian.org/debian"
# arm64: the guest's Python and libraries; amd64: the emulator (and bookworm's qemu 7.2, the defective one a test runs)
SUITES = {"arm64": ["bookworm", "bookworm-updates"], "amd64": [targets.QEMU["suite"], "bookworm"]}
PLATFORMS = {
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux_2_26_aarch64", "manylinux2014_aarch64",
                "manylinux_2_17_aarch64", "linux_aarch64"),
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
               "linux_x86_64"),
}
Say = Callable[[str], None]
_UPDATED: set[Path] = set()  # apt list folders read in this process


@dataclass(frozen=True)
class Environment:
    """How to start a Python that runs one runtime on one architecture: ``command(script, cpu)``."""

    arch: str
    runtime: targets.Runtime
    python: tuple[str, ...]  # the interpreter, behind the emulator for aarch64
    paths: tuple[str, ...] = ()  # PYTHONPATH
    libraries: tuple[str, ...] = ()  # LD_LIBRARY_PATH
    emulator: Path | None = None
    emulator_version: str | None = None

    def command(self, script: Path, args: list[str], cpu: str | None = None) -> tuple[list[str], dict[str, str]]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "LD_LIBRARY_PATH")}
        env.update(PYTHONNOUSERSITE="1", PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
                   TORCH_CPP_LOG_LEVEL="ERROR")
        if self.paths:
            env["PYTHONPATH"] = os.pathsep.join(self.paths)
        if self.libraries:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(self.libraries)
        if cpu is not None:
            env["QEMU_CPU"] = cpu
        return [*self.python, str(script), *args], env


def cache_root() -> Path:
    """VITQ_RUNTIME_CACHE, else the user's cache folder (XDG_CACHE_HOME or ~/.cache)/vitq/runtimes."""
    if os.environ.get(CACHE_VAR):
        return Path(os.environ[CACHE_VAR]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vitq" / "runtimes"


def native_pinned() -> Environment:
    """vitq's own interpreter: the pinned runtimes on this x86-64 host (the reference run)."""
    return Environment("x86_64", targets.pinned(), (sys.executable, "-s"))


def prepare(arch: str, runtime: targets.Runtime, say: Say) -> Environment:
    """The environment for ``runtime`` on ``arch`` (``aarch64`` or ``x86_64``), prepared now if missing."""
    if arch == "x86_64" and runtime.name == targets.PINNED:
        return native_pinned()
    root = cache_root()
    qemu, qemu_version = emulator(say) if arch == "aarch64" else (None, None)  # first: the cheapest to refuse
    site = _piece(root / f"{arch}-{runtime.key}-{_digest(targets.IMPORT_DEPS)}", say,
                  f"{runtime.name} wheels for {arch}", lambda into: _pip_install(into, arch, runtime, say))
    cuda = _piece(root / f"cuda-{arch}-{_digest(targets.CUDA_LIBRARIES)}", say, f"torch's CUDA libraries for {arch}",
                  lambda into: _pip_target(into, arch, targets.CUDA_LIBRARIES, say))
    stubs = _piece(site.with_name(site.name + "-stubs"), say, f"a stand-in for {', '.join(targets.STUBBED)}",
                   lambda into: build_stubs(into, arch, site, root, say))
    libraries = tuple(str(p) for p in sorted(cuda.glob("nvidia/*/lib"))) + (str(stubs),)
    paths = (str(site), str(cuda))
    if qemu is None:
        return Environment(arch, runtime, (sys.executable, "-S"), paths, libraries)
    sysroot = _piece(root / f"python3.11-arm64-{_digest(targets.GUEST_DEBS)}", say, "Python 3.11 for arm64 (Debian)",
                     lambda into: _unpack_debs(into, [f"{p}:arm64" for p in targets.GUEST_DEBS], say))
    python = (str(qemu), "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), "-S")
    return Environment(arch, runtime, python, paths, libraries, qemu, qemu_version)


def emulator(say: Say) -> tuple[Path, str]:
    """qemu-aarch64 and its version line: VITQ_QEMU if set (your own build), else Debian's, statically linked."""
    if os.environ.get(QEMU_VAR):
        binary = Path(os.environ[QEMU_VAR]).expanduser()
        if not binary.is_file():
            raise VitqError(f"{QEMU_VAR}={binary}: no such file; name a qemu-aarch64 binary or unset it")
    else:
        folder = _piece(cache_root() / f"qemu-{targets.QEMU['version'].replace(':', '_')}", say,
                        f"qemu-user {targets.QEMU['version']} (Debian {targets.QEMU['suite']})",
                        lambda into: _unpack_debs(
                            into, [f"{targets.QEMU['package']}:amd64={targets.QEMU['version']}"], say))
        binary = folder / "usr/bin/qemu-aarch64"
    return binary, _run([str(binary), "--version"], f"run {binary}").splitlines()[0].strip()


def emulator_cpus(qemu: Path) -> list[str]:
    """Every CPU model the emulator has (``-cpu help``)."""
    out = subprocess.run([str(qemu), "-cpu", "help"], capture_output=True, text=True).stdout  # exits 1 after listing
    return [line.strip() for line in out.splitlines()[1:] if line.strip()]


# -- pieces


def _piece(final: Path, say: Say, what: str, make: Callable[[Path], None]) -> Path:
    """``final`` if complete, else made now in a temporary sibling and renamed into place."""
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    _check_disk(final.parent)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    say(f"preparing {what} (once) -> {final}")
    with _temporary(final) as tmp:
        make(tmp)
    return final


@contextmanager
def _temporary(final: Path) -> Iterator[Path]:
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_disk(folder: Path) -> None:
    free = shutil.disk_usage(folder).free / 1e9
    if free < NEEDED_GB:
        raise VitqError(f"{folder}: {free:.1f} GB free, the arm64 runtime needs about {NEEDED_GB} GB; free some space "
                        f"or set {CACHE_VAR} to a folder on a larger disk")


def _pip_install(into: Path, arch: str, runtime: targets.Runtime, say: Say) -> None:
    _pip_target(into, arch, (*runtime.packages, *targets.IMPORT_DEPS), say)


def _pip_target(into: Path, arch: str, requirements: tuple[str, ...], say: Say) -> None:
    """Install exact binary wheels for ``arch`` with this host's pip, dependencies named here (pip would chase
    torch's CUDA pins, some of which have no aarch64 build)."""
    platforms = [f"--platform={p}" for p in PLATFORMS[arch]]
    say(f"  pip: {len(requirements)} wheels for {arch}: {', '.join(requirements[:4])}, ...")
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", "--python-version=3.11", "--implementation=cp", *platforms, "--target", str(into),
          *requirements], "install the runtime's wheels from the package index (pip)", network=True)


def build_stubs(into: Path, arch: str, site: Path, root: Path, say: Say) -> None:
    """A library for each of STUBBED exporting the functions torch links from it (read from torch's own ELF
    files), each returning an error code; built with zig's C compiler for ``arch``. torch calls them only to
    profile a GPU."""
    zig = _piece(root / f"tools-{targets.ZIG.replace('==', '')}", say, "zig (a C compiler for aarch64)",
                 lambda into: _pip_target(into, "x86_64", (targets.ZIG,), say))
    for soname in targets.STUBBED:
        names = sorted(set().union(*(linked_functions(lib, soname) for lib in (site / "torch" / "lib").glob("*.so*"))))
        source, script = into / f"{soname}.c", into / f"{soname}.map"
        source.write_text("".join(f"int {name}(void) {{ return 1; }}\n" for name in names))
        script.write_text(f"{soname} {{ global: *; }};\n")
        target = {"aarch64": "aarch64-linux-gnu", "x86_64": "x86_64-linux-gnu"}[arch]
        env = {**os.environ, "PYTHONPATH": str(zig), "ZIG_GLOBAL_CACHE_DIR": str(into / ".zig-cache"),
               "ZIG_LOCAL_CACHE_DIR": str(into / ".zig-cache")}
        _run([sys.executable, "-m", "ziglang", "cc", "-target", target, "-shared", "-fPIC", "-o", str(into / soname),
              f"-Wl,-soname,{soname}", f"-Wl,--version-script={script}", str(source)], "build the stub library",
             env=env)
        shutil.rmtree(into / ".zig-cache", ignore_errors=True)


def linked_functions(library: Path, soname: str) -> set[str]:
    """The undefined symbols ``library`` binds to versions of ``soname`` (``cuptiFinalize@libcupti.so.13``)."""
    from elftools.elf.elffile import ELFFile

    with open(library, "rb") as f:
        elf = ELFFile(f)
        symbols, versym = elf.get_section_by_name(".dynsym"), elf.get_section_by_name(".gnu.version")
        needed = elf.get_section_by_name(".gnu.version_r")
        if symbols is None or versym is None or needed is None:
            return set()
        indices = {aux.entry["vna_other"] for file, auxes in needed.iter_versions() if file.name == soname
                   for aux in auxes}
        return {symbol.name for i, symbol in enumerate(symbols.iter_symbols())
                if symbol["st_shndx"] == "SHN_UNDEF" and _index(versym.get_symbol(i).entry["ndx"]) in indices}


def _index(ndx: int | str) -> int | None:
    """A .gnu.version entry as a number (pyelftools names the two reserved ones), less its hidden bit."""
    return ndx & 0x7FFF if isinstance(ndx, int) else None


def _unpack_debs(into: Path, packages: list[str], say: Say) -> None:
    """Download Debian packages with a private apt configuration (any user, no system change) and unpack them."""
    apt = _private_apt(say)
    debs = into / ".debs"
    debs.mkdir()
    _run(["apt-get", *apt, "download", *packages], "download Debian packages (apt-get download)", cwd=debs,
         network=True)
    for deb in sorted(debs.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(into)], f"unpack {deb.name}")
    shutil.rmtree(debs)


def _private_apt(say: Say) -> list[str]:
    """apt options that keep its lists and downloads inside the cache and read our sources (updated once a run)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise VitqError("arm64 runtime: apt-get and dpkg-deb not found; vitq takes qemu-user and Python 3.11 for "
                        "arm64 from Debian's archive with them: run on a Debian or Ubuntu host (or container)")
    if not KEYRING.is_file():
        raise VitqError(f"arm64 runtime: {KEYRING} not found; install Debian's archive keyring "
                        "(apt-get install debian-archive-keyring)")
    folder = cache_root() / "apt"
    for sub in ("lists/partial", "cache/archives/partial"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    sources = folder / "sources.list"
    sources.write_text("".join(f"deb [arch={arch} signed-by={KEYRING}] {DEBIAN} {suite} main\n"
                               for arch, suites in SUITES.items() for suite in suites)
                       + f"deb [arch=arm64 signed-by={KEYRING}] {DEBIAN}-security bookworm-security main\n")
    options = [f"-oDir::State::Lists={folder / 'lists'}", f"-oDir::Cache={folder / 'cache'}",
               f"-oDir::Etc::SourceList={sources}", "-oDir::Etc::SourceParts=/dev/null",
               "-oAPT::Architectures::=arm64", "-oAPT::Architectures::=amd64", "-oDebug::NoLocking=1",
               "-oAPT::Sandbox::User=root" if os.geteuid() == 0 else "-oAPT::Sandbox::User=" + _user()]
    if folder not in _UPDATED:
        say(f"  apt: reading Debian's package lists (bookworm for arm64, {targets.QEMU['suite']} for qemu)")
        _run(["apt-get", *options, "-q", "update"], "read Debian's package lists (apt-get update)", network=True)
        _UPDATED.add(folder)
    return options


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _run(command: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         network: bool = False) -> str:
    try:
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise VitqError(f"arm64 runtime: could not {what}: {exc.strerror}") from None
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("E:", "ERROR", "error"))] or lines or ["no output"]
        hint = "; check the network or proxy to the package index and Debian's archive" if network else ""
        raise VitqError(f"arm64 runtime: could not {what}: {errors[0][:240]}{hint}")
    return done.stdout


def _digest(items: tuple[str, ...]) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:10]
