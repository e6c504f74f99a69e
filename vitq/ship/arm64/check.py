"""Run a build's shipped mobile files on its sample images in every runtime and emulated ARM CPU asked for, and judge
each run as the x86 build was judged: top-1 agreement with fp32 and accuracy drop (the recipe's gates, where the
weights are trained), and against the same file's x86 run (agreement and largest logit difference, always).

The images are preprocessed here, on x86, once: every run sees the same float inputs, so a difference is the
runtime's or the CPU's, never the preprocessing's.
"""

from __future__ import annotations

import json
import platform
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vitq.check import manifest as mf
from vitq.errors import VitqError
from vitq.fileio import sha256_file
from vitq.ship.arm64 import runtime_env, targets
from vitq.ship.arm64.runtime_env import Environment
from vitq.ship.verify import opened_manifest, verify
from vitq.variants import BY_ID, CROSS_CHECK, MOBILE, REFERENCE

GUEST = Path(__file__).with_name("guest.py")
X86_LOGIT_TOLERANCE = 0.05  # of the largest |logit| of the file's x86 run: kernels round differently, not this much
Say = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    """One interpreter run: a runtime on an architecture (and emulated CPU model), over some of the files."""

    env: Environment
    cpu: targets.CpuModel | None
    files: tuple[dict[str, str], ...]

    @property
    def label(self) -> str:
        where = f"arm64 {self.cpu.name}" if self.cpu else "x86-64"
        return f"{where} ({self.env.runtime.name})"


def verify_arm64(target: Path, cpus: list[str] | None = None, limit: int | None = None,
                 runtimes: list[str] | None = None, jobs: int = 2, say: Say = print) -> tuple[dict[str, Any], list[str]]:
    """The record of every run (for arm64.json) and one line per problem; no problems means every file computes on
    every CPU model what the build checked on x86."""
    asked = [targets.pinned()] + [targets.runtime(spec) for spec in runtimes or [] if spec != targets.PINNED]
    with opened_manifest(target) as (manifest_path, shown_as):
        problems = verify(manifest_path, rerun=False)
        if problems:
            return {}, [p.replace(str(manifest_path.parent), shown_as) for p in problems]
        manifest = mf.load(manifest_path)
        root = manifest_path.parent
        recipe = mf.recipe_from_manifest(manifest, root)
        files = _mobile_files(manifest, root)
        plan = _plan(files, asked, cpus, say)  # the runtimes first: a refusal comes before any work
        with tempfile.TemporaryDirectory(prefix="vitq-arm64-") as tmp:
            work = Path(tmp)
            labels, fp32 = _inputs(recipe, manifest, root, limit, work / "images.npy")
            record, problems = _run_all(recipe, plan, files, work, fp32, labels, jobs, say)
        record = {"recipe": manifest["recipe"]["name"], "version": manifest["recipe"]["version"],
                  "manifest_sha256": sha256_file(manifest_path), "images": len(labels), "limit": limit, **record,
                  "passed": not problems, "problems": [p.replace(str(root), shown_as) for p in problems]}
        return record, record["problems"]


def _mobile_files(manifest: dict[str, Any], root: Path) -> list[dict[str, str]]:
    """The shipped files an app runs: the .pte that shipped, the .ptl, and the int8 ONNX file."""
    mobile = [a for a in manifest["artifacts"]
              if a["name"] in (MOBILE, CROSS_CHECK) or BY_ID.get(a["name"]) and BY_ID[a["name"]].format == "executorch"]
    if not mobile:
        raise VitqError(f"{root}: the build ships no mobile file (.pte, .ptl or int8 ONNX) to run on arm64")
    return [{"name": a["path"], "variant": a["name"], "format": a["format"], "path": str(root / a["path"])}
            for a in mobile]


def _inputs(recipe: Any, manifest: dict[str, Any], root: Path, limit: int | None,
            out: Path) -> tuple[list[set[int]], np.ndarray]:
    """Preprocess the (first ``limit``) sample images into ``out``; their accepted labels and fp32's logits."""
    import torch

    from vitq.model import runtimes
    from vitq.model.preprocess import load_batch
    from vitq.model.samples import read_samples
    from vitq.model.torch_setup import configure_torch

    configure_torch(recipe)
    samples = read_samples(root / manifest["samples"]["labels"])[:limit]
    images = torch.cat([load_batch(recipe.preprocess, [s.path]) for s in samples])
    np.save(out, images.numpy().astype(np.float32))
    torch.set_num_threads(1)
    run = runtimes.load(REFERENCE, recipe, mf.artifact_files(manifest, root), 1)
    fp32 = np.concatenate([run(image[None]) for image in images]).astype(np.float32)
    return [set(s.accepted) for s in samples], fp32


def _plan(files: list[dict[str, str]], asked: list[targets.Runtime], cpus: list[str] | None, say: Say) -> list[Run]:
    """Every run, the x86-64 reference first, each runtime prepared (once) for it."""
    plan = [Run(runtime_env.native_pinned(), None, tuple(files))]
    for runtime in asked:
        mine = tuple(f for f in files if f["format"] in runtime.formats)
        if not mine:
            continue
        if runtime.name != targets.PINNED:
            plan.append(Run(runtime_env.prepare("x86_64", runtime, say), None, mine))
        arm = runtime_env.prepare("aarch64", runtime, say)
        models = targets.cpu_models(cpus, runtime_env.emulator_cpus(arm.emulator))
        plan += [Run(arm, cpu, mine) for cpu in models]
    return plan


def _run_all(recipe: Any, plan: list[Run], files: list[dict[str, str]], work: Path, fp32: np.ndarray,
             labels: list[set[int]], jobs: int, say: Say) -> tuple[dict[str, Any], list[str]]:
    answer = _known_answer(say)
    results = _execute(plan, work, answer, recipe.quantize.engine, jobs, say)
    reference = {f["name"]: results[0]["logits"][f["name"]] for f in files if f["name"] in results[0]["logits"]}
    problems, runs = [], []
    for i, (run, result) in enumerate(zip(plan, results, strict=True)):
        entry, found = _judge(recipe, run, result, fp32, labels, reference if i else {})  # run 0 is the reference
        runs.append(entry)
        problems += found
    arm_env = next((r.env for r in plan if r.cpu is not None), None)
    record = {"host": _host_cpu(), "emulator": {"name": "qemu-aarch64", "version": arm_env.emulator_version}
              if arm_env else None, "runs": runs}
    return record, problems


def _known_answer(say: Say) -> dict[str, str]:
    """The known-answer program, made once per ExecuTorch version with this host's exporter."""
    from importlib.metadata import version

    from vitq.ship.arm64 import known_answer

    folder = runtime_env.cache_root() / f"known-answer-executorch{version('executorch')}-{known_answer.SEED}"
    if not all((folder / f).is_file() for f in known_answer.FILES):
        say(f"preparing the known-answer program (once) -> {folder}")
        return known_answer.write(folder)
    return dict(zip(("program", "input", "expected"), (str(folder / f) for f in known_answer.FILES), strict=True))


def _execute(plan: list[Run], work: Path, answer: dict[str, str], engine: str, jobs: int,
             say: Say) -> list[dict[str, Any]]:
    """Every run, ``jobs`` at a time (each is one single-threaded process); each one's logits, errors and record."""
    lock = threading.Lock()

    def one(index: int, run: Run) -> dict[str, Any]:
        out = work / f"run-{index}"
        job = {"inputs": str(work / "images.npy"), "engine": engine, "out": str(out), "known_answer": answer,
               "files": [{k: f[k] for k in ("name", "format", "path")} for f in run.files]}
        (work / f"job-{index}.json").write_text(json.dumps(job))
        command, env = run.env.command(GUEST, [str(work / f"job-{index}.json")], run.cpu.name if run.cpu else None)
        start = time.monotonic()
        with lock:
            say(f"{run.label}: starting")
        with open(work / f"run-{index}.stderr", "w+") as stderr, subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True) as proc:
            for line in proc.stdout:
                with lock:
                    say(f"{run.label}: {line.rstrip()}")
            proc.wait()
            stderr.seek(0)  # kept for a failure's last line: a crashed interpreter says why there
            tail = [line.strip() for line in stderr if line.strip()]
        seconds = round(time.monotonic() - start, 1)
        result_file = out / "result.json"
        if proc.returncode != 0 or not result_file.is_file():
            return {"failed": (tail[-1] if tail else f"exit {proc.returncode}")[:300], "seconds": seconds,
                    "logits": {}, "errors": {}}
        result = json.loads(result_file.read_text())
        logits = {f["name"]: np.load(out / f"{i}.npy") for i, f in enumerate(run.files)
                  if "seconds" in result["files"].get(f["name"], {})}
        errors = {name: r["error"] for name, r in result["files"].items() if "error" in r}
        return {**result, "seconds": seconds, "logits": logits, "errors": errors}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, range(len(plan)), plan))


def _judge(recipe: Any, run: Run, result: dict[str, Any], fp32: np.ndarray, labels: list[set[int]],
           reference: dict[str, np.ndarray]) -> tuple[dict[str, Any], list[str]]:
    """A run's record and its problems: the emulator's own checks first (it must present the CPU model's features
    and give the known answer), then each file against fp32 and against its x86 run."""
    entry: dict[str, Any] = {"arch": run.env.arch, "cpu": run.cpu.name if run.cpu else _host_cpu(),
                             "family": run.cpu.family if run.cpu else None, "runtime": run.env.runtime.name,
                             "versions": dict(p.split("==") for p in run.env.runtime.packages),
                             "seconds": result["seconds"], "files": {}}
    if "failed" in result:
        entry["failed"] = result["failed"]
        return entry, [f"{run.label}: the runtime did not start: {result['failed']}"]
    entry["capabilities"] = result["capabilities"]
    answer = result["known_answer"]
    entry["known_answer"] = {"max_abs_error": answer["max_abs_error"], "passed": answer["max_abs_error"] == 0.0}
    problems = []
    if run.cpu is not None:
        missing = [f for f in run.cpu.features if f not in result["capabilities"]]
        extra = [f for f in run.cpu.absent if f in result["capabilities"]]
        if missing or extra:
            problems.append(f"{run.label}: the emulated CPU does not present the {run.cpu.family} family "
                            f"(missing {', '.join(missing) or 'nothing'}, present {', '.join(extra) or 'nothing'} "
                            "that it must not have)")
    if not entry["known_answer"]["passed"]:
        problems.append(f"{run.label}: the known-answer check failed (max error {answer['max_abs_error']:.6g}, "
                        "needs 0): this emulator computes wrong on this CPU model, so its runs are not trusted; "
                        "use another qemu or CPU model")
        return entry, problems
    reference_top1 = fp32.argmax(1)
    fp32_accuracy = _accuracy(reference_top1, labels)
    for file in run.files:
        name = file["name"]
        if name in result["errors"]:
            entry["files"][name] = {"error": result["errors"][name]}
            problems.append(f"{file['path']}: does not run on {run.label}: {result['errors'][name]}")
            continue
        if name not in result["logits"]:
            continue
        logits = result["logits"][name]
        figures = _figures(logits, reference_top1, labels, reference.get(name))
        checks = _checks(recipe, figures, fp32_accuracy, reference.get(name))
        entry["files"][name] = {**figures, "seconds": result["files"][name]["seconds"], "checks": checks,
                                "passed": all(c["passed"] is not False for c in checks)}
        problems += [f"{file['path']}: on {run.label}: {c['name']} {c['value']:.6g}, needs {c['op']} "
                     f"{c['threshold']:.6g}" for c in checks if c["passed"] is False]
    return entry, problems


def _figures(logits: np.ndarray, fp32_top1: np.ndarray, labels: list[set[int]],
             x86: np.ndarray | None) -> dict[str, Any]:
    top1 = logits.argmax(1)
    figures = {"images": len(labels), "top1": _accuracy(top1, labels),
               "agreement_fp32": round(float((top1 == fp32_top1).mean()), 6)}
    if x86 is not None:
        figures["agreement_x86"] = round(float((top1 == x86.argmax(1)).mean()), 6)
        figures["max_abs_logit_diff_x86"] = float(np.abs(logits.astype(np.float64) - x86).max())
    return figures


def _checks(recipe: Any, figures: dict[str, Any], fp32_accuracy: float, x86: np.ndarray | None) -> list[dict[str, Any]]:
    """The build's own gates on this run, and the comparison with the file's x86 run."""
    from vitq.check.gates import gate as check

    meaningful = recipe.accuracy_meaningful
    limits = recipe.checks
    checks = [check("agreement with fp32", figures["agreement_fp32"], limits.min_agreement, ">=", meaningful),
              check("accuracy drop", round(fp32_accuracy - figures["top1"], 6), limits.max_accuracy_drop, "<=",
                    meaningful)]
    if x86 is not None:
        bound = X86_LOGIT_TOLERANCE * float(np.abs(x86).max())
        checks += [check("agreement with x86", figures["agreement_x86"], limits.min_agreement, ">="),
                   check("max |dlogit| vs x86", figures["max_abs_logit_diff_x86"], round(bound, 6), "<=")]
    return checks


def _accuracy(top1: np.ndarray, labels: list[set[int]]) -> float:
    return round(sum(int(p) in accepted for p, accepted in zip(top1, labels, strict=True)) / len(labels), 6)


def _host_cpu() -> str:
    """This x86 host's CPU model name (the reference run's CPU)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
