"""Save for the PyTorch Lite interpreter, then load the file back and check it computes what its source does
on a real sample image (the eval stage later scores it on all of them).

With ``mobile: {optimize: false}`` the source is the plain TorchScript file, which the lite loader of torch 2.12.1
cannot read back when a scripted module keeps a Python enum attribute (timm's ``PatchEmbed.output_fmt``):
``isGenericDict() INTERNAL ASSERT FAILED``. ``optimize_for_mobile`` avoids that only because it freezes the
module first (attributes become constants), so that is the one step taken here: ``torch.jit.freeze``, none of
the mobile passes (prepacking, dropout removal, add/relu fusion).
"""

from __future__ import annotations

from pathlib import Path

import torch

from vitq.errors import VitqError, converting
from vitq.fileio import atomic_path
from vitq.layout import SAMPLES
from vitq.model.convert import PTL_OFF
from vitq.model.preprocess import load_batch
from vitq.model.runtimes import load_lite, load_torchscript
from vitq.model.samples import read_samples
from vitq.recipe import Recipe

TOLERANCE = 1e-4


def run(recipe: Recipe, inputs: dict[str, Path], outputs: dict[str, Path]) -> str:
    [(parent, source)] = [(key, path) for key, path in inputs.items() if key != SAMPLES]  # optimized, or int8
    scripted = load_torchscript(source)
    freeze = parent != "optimized"  # see above
    saved = torch.jit.freeze(scripted.eval()) if freeze else scripted
    sample = read_samples(inputs[SAMPLES])[0].path
    with atomic_path(outputs["lite"]) as tmp:
        with converting(recipe.path, "mobile", "saving for the lite interpreter", PTL_OFF.removeprefix("or ")):
            saved._save_for_lite_interpreter(str(tmp))
            load_lite(tmp)
        diff, top1 = check_lite(recipe, scripted, tmp, sample)  # against the file it came from
    frozen = " (frozen)" if freeze else ""
    return (f"{source.name}{frozen} -> {outputs['lite'].name}, reloaded in the lite interpreter and run on {sample.name} "
            f"(class {top1}): max |dlogit| vs source {diff:.1e}")


def check_lite(recipe: Recipe, scripted: torch.jit.ScriptModule, lite_file: Path, image: Path) -> tuple[float, int]:
    """Run the freshly written .ptl on one preprocessed image, as an app would; refuse a file that disagrees."""
    inputs = load_batch(recipe.preprocess, [image])
    lite = load_lite(lite_file)
    with torch.no_grad():
        expected = scripted(inputs)
        got = lite(inputs)
    diff = (expected - got).abs().max().item()
    if got.shape != expected.shape or diff > TOLERANCE:
        raise VitqError(f"{lite_file.name}: lite interpreter output on {image.name} differs from "
                        f"{recipe.name}'s TorchScript by {diff:.2e}")
    return diff, int(got.argmax(dim=1).item())
