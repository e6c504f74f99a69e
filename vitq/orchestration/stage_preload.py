"""Imported once by the stage server (vitq.orchestration.stage_process) before it forks stages: what nearly every stage
imports anyway. Imports only: no torch op runs here, so the server holds no thread pool when it forks."""

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import numpy  # noqa: F401
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import PIL.Image  # noqa: F401
    import safetensors.torch  # noqa: F401
    import timm  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    import vitq.check.evaluate  # noqa: F401
    import vitq.model.convert  # noqa: F401
    import vitq.model.networks  # noqa: F401
    import vitq.model.runtimes  # noqa: F401

# tqdm makes a multiprocessing lock (a named semaphore) for its first bar: made here, once, not by each stage
# (a stage leaves without the cleanup that would unregister it).
from tqdm import tqdm  # noqa: E402

tqdm.get_lock()
