"""One module per build stage, each with ``run(recipe, paths) -> summary``. The only torch importers.

Stages never call each other: doit wires them through the files named in ``vitq.pipeline``.
"""
