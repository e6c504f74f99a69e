"""optimize_for_mobile: fold and prepack ops for the mobile CPU backend (XNNPACK / qnnpack)."""

from __future__ import annotations

import torch
from torch.utils.mobile_optimizer import MobileOptimizerType, optimize_for_mobile

from vitq.fileio import atomic_path
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    scripted = torch.jit.load(str(paths.int8), map_location="cpu")
    blocklist = {getattr(MobileOptimizerType, name) for name in recipe.mobile.blocklist}
    optimized = optimize_for_mobile(scripted, optimization_blocklist=blocklist)
    with atomic_path(paths.optimized) as tmp:
        optimized.save(str(tmp))
    skipped = f" (skipping {', '.join(sorted(recipe.mobile.blocklist))})" if blocklist else ""
    return f"optimize_for_mobile{skipped}"
