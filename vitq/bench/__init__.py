"""Benchmark every variant of a build side by side: latency, file size and peak extra memory.

    python -m vitq.bench RECIPE_FILE ARTIFACTS_ROOT [--repeats N] [--warmup N] [--threads N] [--batch-sizes 1,8]
                         [--no-progress]

Writes ``bench.json`` (machine-readable), ``bench.md`` (table + which artifact is for which target) and
``bench.png`` (latency and size per variant) into ``artifacts/<recipe>/``. ``doit bench:<recipe>`` runs it.

The variants are the rows of ``vitq.variants`` this recipe builds, loaded with ``vitq.model.runtimes``; the
in-memory int8 eager variant is measured once per quantized engine of this torch build.

    measure.py    inputs, peak-memory probe, host info, one variant's numbers, run_bench() -> report dict
    report.py     markdown(report): the table, which artifact is which, how it was measured
    chart.py      chart(report, out): latency and size panels (PNG)
    __main__.py   the command line: arguments, atomic writes, the one summary line

Nothing here is imported by doit (``vitq.orchestration.actions`` runs ``python -m vitq.bench`` in a child process), and this
file imports nothing: torch is loaded only when measuring.
"""
