"""optimize_for_mobile: fold and prepack ops for the mobile CPU backend (XNNPACK / qnnpack)."""

from __future__ import annotations

from pathlib import Path

from torch.utils.mobile_optimizer import MobileOptimizerType, optimize_for_mobile

from vitq.errors import converting
from vitq.fileio import atomic_path
from vitq.model.convert import PTL_OFF, save_torchscript
from vitq.model.runtimes import load_torchscript
from vitq.recipe import Recipe


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    blocklist = {getattr(MobileOptimizerType, name) for name in recipe.mobile.blocklist}
    with converting(recipe.path, "mobile", "optimize_for_mobile", f"try mobile: {{optimize: false}}, {PTL_OFF}"):
        optimized = optimize_for_mobile(load_torchscript(inputs["int8"]), optimization_blocklist=blocklist)
        with atomic_path(outputs["optimized"]) as tmp:
            save_torchscript(optimized, tmp)
    skipped = f" (skipping {', '.join(sorted(recipe.mobile.blocklist))})" if blocklist else ""
    return f"optimize_for_mobile{skipped}"
