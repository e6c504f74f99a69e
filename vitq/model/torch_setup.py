"""Set torch up the same way in every process that builds or runs a model: same bytes, same numbers."""

from __future__ import annotations

import logging
import warnings

from vitq.errors import RecipeError
from vitq.recipe import Recipe


def configure_torch(recipe: Recipe, threads: int | None = None) -> None:
    """Fixed threads, deterministic algorithms, the recipe's quantized engine; deprecation noise off.

    The lite interpreter, TorchScript and eager quantize_dynamic warn that they are deprecated on every
    call: the versions are recorded in every manifest, the warnings are not for users.
    """
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*(deprecat|lite interpreter|TorchScript).*")
    warnings.filterwarnings("ignore", message=r".*qnnpack incorrectly ignores reduce_range.*")  # said per call
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)  # torchao's import (via executorch or
    # transformers) warns that torch now supports its Enums natively
    import torch

    torch.set_num_threads(threads or recipe.threads)
    torch.use_deterministic_algorithms(True)
    set_engine(recipe, recipe.quantize.engine)


def set_engine(recipe: Recipe, engine: str) -> None:
    """Quantized weights are packed for the engine that is set when they are loaded or quantized."""
    import torch

    if engine not in torch.backends.quantized.supported_engines:
        raise RecipeError(recipe.path, "quantize.engine", f"'{engine}' is not available in this torch build "
                          f"(have {', '.join(torch.backends.quantized.supported_engines)})")
    torch.backends.quantized.engine = engine
