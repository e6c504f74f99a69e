"""Class names for reports and ``vitq predict``: stored once in the fp32 artifact's metadata.

timm ImageNet-1k models get timm's offline ImageNet names, transformers models their config's
id2label, the digits recipe its digits; anything else 'class N'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vitq.recipe import Recipe

METADATA_KEY = "vitq"  # JSON: recipe, model, class_names


def class_names_for(recipe: Recipe, model: Any, classes: int) -> list[str]:
    from vitq.model.logits import LogitsOnly

    if isinstance(model, LogitsOnly):
        id2label = getattr(model.model.config, "id2label", None) or {}
        if len(id2label) == classes:
            return [str(id2label[i]) for i in range(classes)]
    if recipe.weights.train is not None and recipe.weights.train.dataset == "digits" and classes == 10:
        return [str(i) for i in range(10)]
    if classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(1000)]
    return [f"class {i}" for i in range(classes)]


def read_class_names(fp32_file: Path) -> list[str] | None:
    from safetensors import safe_open

    with safe_open(str(fp32_file), framework="pt") as fh:
        raw = (fh.metadata() or {}).get(METADATA_KEY)
    return json.loads(raw).get("class_names") if raw else None
