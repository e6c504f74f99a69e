"""A recipe for a model, from the model's own pretrained configuration (``vitq new``): a user starts from the
preprocessing the weights were trained with instead of copying numbers from a model card.

timm: the ``pretrained_cfg`` (input size, interpolation, crop_pct, crop_mode, mean, std), resolved as timm's
``resolve_data_config`` + ``create_transform`` do for evaluation. transformers: the image processor's config
(``preprocessor_config.json`` from the hub cache or a folder).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from vitq.errors import VitqError, first_line, quiet_stderr
from vitq.model.networks import timm_name_hint

RESAMPLING = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}  # PIL's numbers


def model_section(name: str) -> dict[str, Any]:
    """``model:`` for a name: a timm model, or a transformers hub id (``owner/name``) or local folder."""
    if "/" in name or Path(name).is_dir():
        return {"source": "transformers", "name": name}
    import timm

    if not timm.is_model(name):
        raise VitqError(f"{name}: unknown timm model{timm_name_hint(name)} (a transformers model is a hub id "
                        "owner/name or a folder)")
    return {"source": "timm", "name": name}


def preprocess_section(model: dict[str, Any]) -> dict[str, Any]:
    """``preprocess:`` as the model's pretrained configuration says."""
    if model["source"] == "timm":
        return _timm_preprocess(model["name"])
    return _transformers_preprocess(model["name"])


def _timm_preprocess(name: str) -> dict[str, Any]:
    import timm

    cfg = timm.get_pretrained_cfg(name)
    crop = cfg.input_size[-1]
    crop_pct = cfg.crop_pct or 0.875
    resize = math.floor(crop / crop_pct)  # timm's transforms_factory for evaluation
    mode = {"center": "shorter", "squash": "exact"}.get(cfg.crop_mode or "center")
    if mode is None:
        raise VitqError(f"{name}: timm's crop_mode '{cfg.crop_mode}' has no vitq equivalent (center or squash)")
    return {"resize": resize, "resize_mode": mode, "crop": crop, "interpolation": cfg.interpolation or "bicubic",
            "mean": [float(v) for v in cfg.mean], "std": [float(v) for v in cfg.std]}


def _transformers_preprocess(name: str) -> dict[str, Any]:
    try:
        with quiet_stderr():  # importing transformers' image processors logs torch deprecation notices
            from transformers import AutoImageProcessor

            processor = AutoImageProcessor.from_pretrained(name)
    except Exception as exc:
        raise VitqError(f"{name}: cannot read its image processor config ({first_line(exc)[:160]}); give a folder "
                        "with preprocessor_config.json, or populate the Hugging Face cache (HF_HOME)") from None
    if getattr(processor, "do_flip_channel_order", False):
        raise VitqError(f"{name}: its image processor flips RGB to BGR, which vitq's preprocessing does not do")
    size = dict(processor.size)
    if "shortest_edge" in size:
        resize, mode = size["shortest_edge"], "shorter"
    else:
        resize, mode = size["height"], "exact"
    crop = dict(processor.crop_size)["height"] if getattr(processor, "do_center_crop", False) else resize
    normalize = getattr(processor, "do_normalize", True)
    return {"resize": resize, "resize_mode": mode, "crop": crop,
            "interpolation": RESAMPLING.get(int(processor.resample), "bilinear"),
            "mean": [float(v) for v in processor.image_mean] if normalize else [0.0, 0.0, 0.0],
            "std": [float(v) for v in processor.image_std] if normalize else [1.0, 1.0, 1.0]}


def recipe_text(name: str) -> str:
    """The recipe YAML for a model: its hub weights, its own preprocessing, scikit-image's sample photos."""
    import yaml

    model = model_section(name)
    body = {"model": model, "weights": "hub", "preprocess": preprocess_section(model), "samples": "photos"}
    header = (f"# {model['name']} ({model['source']}), written by `vitq new`: preprocessing from the model's pretrained "
              "config.\n# Offline, build with random weights: weights: {random: {seed: 0}}\n")
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None, width=120)
