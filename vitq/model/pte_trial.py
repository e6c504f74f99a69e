"""Run a lowered ExecuTorch program once, in a process of its own: ExecuTorch 1.3.1's XNNPACK runtime does not
always refuse a program it mishandles, it may also crash (HGNetV2's dynamically quantized convs: a segmentation
fault in execute()), and that must cost the trial, not the build.

    python -m vitq.model.pte_trial PROGRAM.pte OUTPUT_FOLDER INPUT.npy [INPUT.npy ...]

Writes each output as OUTPUT_FOLDER/<index>.npy; exit status 1 and the cause on stderr when it does not run.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    import numpy as np
    import torch
    from executorch.runtime import Runtime

    program, out, *inputs = argv
    try:
        loaded = Runtime.get().load_program(Path(program))  # the method runs inside the program's memory: keep both
        outputs = loaded.load_method("forward").execute([torch.from_numpy(np.load(i)) for i in inputs])
    except Exception as exc:  # the runtime logged its cause on stderr already; this is the last word
        print(f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 1
    for index, output in enumerate(outputs):
        np.save(Path(out) / f"{index}.npy", output.numpy())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
