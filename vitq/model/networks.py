"""Build the recipe's network and fill it with weights (imported by stages only: it imports torch).

Factories are keyed by ``model.source``; each returns an eval-mode ``nn.Module`` whose forward takes
a float image batch ``[N, 3, H, W]`` and returns logits ``[N, classes]``.
"""

from __future__ import annotations

import difflib
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

from vitq.errors import RecipeError, VitqError, first_line
from vitq.model.logits import LogitsOnly
from vitq.model.portable_init import portable_init
from vitq.recipe import Recipe


def create_model(recipe: Recipe) -> Any:
    """The architecture with freshly initialised weights (seed the RNG before calling), the same bits on any
    x86-64 CPU (``portable_init``)."""
    with portable_init():
        if recipe.model.source == "timm":
            return _create_timm(recipe, pretrained=False)
        return _create_transformers(recipe, pretrained=False)


def pretrained_model(recipe: Recipe) -> Any:
    """The architecture with the hub's weights, through the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE).

    Without network, huggingface_hub retries for about 50 s before failing; so the hub is probed first
    and, when unreachable, only the cache is used: cached weights load, missing ones fail at once.
    """
    offline = None
    try:
        with _offline_unless_reachable(recipe) as offline:
            if recipe.model.source == "timm":
                return _create_timm(recipe, pretrained=True)
            return _create_transformers(recipe, pretrained=True)
    except VitqError:
        raise
    except Exception as exc:  # network, cache and hub errors come in many types
        why = f"{offline}; " if offline else ""
        raise RecipeError(
            recipe.path,
            "weights",
            f"hub weights {hub_id(recipe)} are not available ({why}{first_line(exc)[:120].rstrip()}); supply them as a "
            "local file (weights: {file: model.safetensors}) or populate the Hugging Face cache "
            "(HF_HOME) on a machine with network",
        ) from None


@contextmanager
def _offline_unless_reachable(recipe: Recipe) -> Iterator[str | None]:
    """Yield why the hub is not used (None: it is), keeping huggingface_hub offline meanwhile.

    huggingface_hub reads HF_HUB_OFFLINE once, at import, into ``constants``; timm and transformers
    ask ``constants`` on every call, so switching it there (and back afterwards) is enough.
    """
    from huggingface_hub import constants

    offline = None
    if constants.HF_HUB_OFFLINE or _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE"):
        offline = "offline: HF_HUB_OFFLINE is set"
    elif not (recipe.model.source == "transformers" and Path(recipe.model.name).is_dir()):
        target = hub_probe_target(constants.ENDPOINT)
        if not hub_reachable(*target):
            offline = f"no network: cannot reach {target[0]}:{target[1]}"
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or offline is not None
    try:
        yield offline
    finally:
        constants.HF_HUB_OFFLINE = saved


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")


def hub_probe_target(endpoint: str) -> tuple[str, int]:
    """The host and port a request to ``endpoint`` connects to first: the proxy, if one applies."""
    url = urlsplit(endpoint)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(url.hostname or ""):
        url = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    return url.hostname or "", url.port or (443 if url.scheme == "https" else 80)


def hub_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to host:port opens within ``timeout`` seconds, DNS included.

    getaddrinfo has no timeout of its own and can hang, so it runs in a daemon thread.
    """
    deadline = time.monotonic() + timeout
    found: list[Any] = []

    def resolve() -> None:
        try:
            found.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError):
            pass

    resolver = threading.Thread(target=resolve, daemon=True)
    resolver.start()
    resolver.join(timeout)
    for family, kind, proto, _, address in list(found):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.settimeout(left)
                sock.connect(address)
                return True
        except OSError:
            continue
    return False


def hub_id(recipe: Recipe) -> str:
    """Where hub weights come from: the Hugging Face repo timm or transformers would download."""
    if recipe.model.source == "transformers":
        return recipe.model.name
    import timm

    cfg = timm.models.get_pretrained_cfg(recipe.model.name) if timm.is_model(recipe.model.name) else None
    return getattr(cfg, "hf_hub_id", None) or f"timm/{recipe.model.name}"


def weights_uri(recipe: Recipe) -> str:
    """Where the weights came from, as a URI for the manifest and provenance."""
    kind = recipe.weights.kind
    if kind == "hub":
        return f"https://huggingface.co/{hub_id(recipe)}"
    if kind == "file":
        return recipe.resolved()["weights"]["file"]  # relative to the recipe file
    if kind == "train":
        return f"urn:vitq:trained-on:sklearn.datasets.load_{recipe.weights.train.dataset}"
    return f"urn:vitq:random-init:seed-{recipe.weights.random.seed}"


def load_weights_file(recipe: Recipe, model: Any, path: Path) -> Any:
    """Load a local .safetensors, or a .pth/.pt with ``torch.load(weights_only=True)``, strictly."""
    if not path.is_file():
        raise RecipeError(recipe.path, "weights.file", f"file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RecipeError(recipe.path, "weights.file", f"cannot read {path.name}: {first_line(exc)}") from None
    if isinstance(state, dict):
        for key in ("state_dict", "model"):
            if isinstance(state.get(key), dict):
                state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RecipeError(recipe.path, "weights.file", f"{path.name} does not hold a state dict of tensors")
    target = model.model if isinstance(model, LogitsOnly) else model
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise RecipeError(recipe.path, "weights.file", f"{path.name} does not fit {recipe.model.name}: {first_line(exc)}") from None
    return model.eval()


def _create_timm(recipe: Recipe, pretrained: bool) -> Any:
    import timm

    name = recipe.model.name
    if not timm.is_model(name):
        raise RecipeError(recipe.path, "model.name", f"unknown timm model '{name}'{timm_name_hint(name)}")
    try:
        model = timm.create_model(name, pretrained=pretrained, **recipe.model.kwargs)
    except TypeError as exc:
        raise RecipeError(recipe.path, "model.kwargs", first_line(exc)) from None
    return model.eval()


def timm_name_hint(name: str) -> str:
    """``; did you mean 'x'?`` for the closest timm model name, or nothing when none is close."""
    import timm

    guess = difflib.get_close_matches(name, timm.list_models(), n=1)
    return f"; did you mean '{guess[0]}'?" if guess else ""


def _create_transformers(recipe: Recipe, pretrained: bool) -> Any:
    """Any transformers image classifier: hub weights by id or folder, or the architecture from the hub's (or a
    folder's) config, or from a model class's default config (``name: MobileViTForImageClassification``) with
    ``kwargs`` on top."""
    from transformers import AutoConfig, AutoModelForImageClassification

    name, overrides = recipe.model.name, dict(recipe.model.kwargs)
    if pretrained:
        model = AutoModelForImageClassification.from_pretrained(name, **overrides)
    elif name in transformers_classes():
        import transformers

        model_class = getattr(transformers, name)
        try:
            model = model_class(model_class.config_class(**overrides))
        except (TypeError, ValueError) as exc:
            raise RecipeError(recipe.path, "model.kwargs", first_line(exc)) from None
    else:
        try:
            with _offline_unless_reachable(recipe):  # no 50 s of retries without network
                config = AutoConfig.from_pretrained(name, **overrides)
            model = AutoModelForImageClassification.from_config(config)
        except Exception as exc:
            guess = difflib.get_close_matches(name, transformers_classes(), n=1)
            hint = f"did you mean {guess[0]}, " if guess else ""
            raise RecipeError(
                recipe.path,
                "model.name",
                f"cannot get the config of '{name}' ({first_line(exc)}); {hint}use a model class "
                "(e.g. ViTForImageClassification) with the config in model.kwargs, or populate the Hugging Face cache",
            ) from None
    model.eval()
    return LogitsOnly(model).eval()


def transformers_classes() -> list[str]:
    """The transformers image-classification model classes a recipe may name (the architecture built from the
    class's default config plus ``kwargs``): every class AutoModelForImageClassification knows."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES

    names = set()
    for value in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES.values():
        names.update(value if isinstance(value, tuple) else (value,))
    return sorted(names)


def load_fp32(recipe: Recipe, path: Path) -> Any:
    """The reference float model: the recipe's architecture with the weights of the fp32 artifact."""
    from safetensors.torch import load_file

    model = create_model(recipe)
    target = model.model if isinstance(model, LogitsOnly) else model
    target.load_state_dict(load_file(str(path)), strict=True)
    return model.eval()


def example_input(recipe: Recipe) -> torch.Tensor:
    """A batch of one image of the recipe's input size, for tracing and smoke runs."""
    size = recipe.preprocess.crop
    return torch.zeros(1, 3, size, size)
