"""Save for the PyTorch Lite interpreter, then load the file back and check it computes what its source does."""

from __future__ import annotations

import torch
from torch.jit.mobile import _load_for_lite_interpreter

from vitq.errors import VitqError
from vitq.fileio import atomic_path
from vitq.layout import ArtifactPaths
from vitq.recipe import Recipe

TOLERANCE = 1e-4


def run(recipe: Recipe, paths: ArtifactPaths) -> str:
    source = paths.optimized if recipe.mobile.optimize else paths.int8
    scripted = torch.jit.load(str(source), map_location="cpu")
    with atomic_path(paths.lite) as tmp:
        scripted._save_for_lite_interpreter(str(tmp))
        diff = check_lite(recipe, scripted, tmp)
    return f"{source.name} -> {paths.lite.name}, reloaded in the lite interpreter: max |dlogit| vs source {diff:.1e}"


def check_lite(recipe: Recipe, scripted: torch.jit.ScriptModule, lite_file) -> float:
    """Run the freshly written .ptl through the lite interpreter; refuse a file that disagrees."""
    size = recipe.preprocess.crop
    inputs = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    lite = _load_for_lite_interpreter(str(lite_file))
    with torch.no_grad():
        expected = scripted(inputs)
        got = lite(inputs)
    diff = (expected - got).abs().max().item()
    if got.shape != expected.shape or diff > TOLERANCE:
        raise VitqError(f"{lite_file.name}: lite interpreter output differs from {recipe.name}'s TorchScript by {diff:.2e}")
    return diff
