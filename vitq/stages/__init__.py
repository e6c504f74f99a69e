"""One module per build stage, each ``run(recipe, inputs, outputs) -> summary``; only vitq.orchestration.runner imports them.

``inputs`` and ``outputs`` map names to the very paths ``vitq.orchestration.pipeline`` gives doit as file_dep and targets.
Stages never call each other: doit wires them through those files. Shared torch code lives below them
(vitq.model.networks, vitq.model.convert, vitq.model.runtimes).
"""
