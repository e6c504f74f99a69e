"""vitq.model.executorch_export: the .pte of the session's tiny build runs in XNNPACK whole, and what the
partitioner leaves out is recorded per operator with its reason."""

from __future__ import annotations

import json

import torch

from vitq.model.executorch_export import delegation_record, operator_name, partitioner_reasons, use_venv_flatc


def test_the_tiny_vit_runs_in_xnnpack_whole_and_the_record_counts_it(tiny_build):
    """export_executorch's second result, as the pte stage of the session's tiny build wrote it."""
    delegation = json.loads(tiny_build.delegation.read_text())
    assert set(delegation) == {"backend", "delegated_subgraphs", "delegated_nodes", "portable_nodes",
                               "portable_operators", "portable_reasons", "quantization"}
    assert delegation["quantization"] == {"strategy": "dynamic_int8", "keep_float": []}  # no calibration declared
    assert delegation["backend"] == "XnnpackBackend"
    assert delegation["delegated_subgraphs"] == 1 and delegation["delegated_nodes"] > 50
    assert delegation["portable_nodes"] == sum(delegation["portable_operators"].values()) <= 5
    assert set(delegation["portable_reasons"]) == set(delegation["portable_operators"])


def test_an_operator_xnnpack_has_no_rule_for_is_recorded_with_that_reason():
    """A graph with an operator the partitioner does not know (cumsum) and one it refuses (a mean over dim 1)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    class Odd(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=1).mean(dim=1) + 1

    use_venv_flatc()
    program = torch.export.export(Odd(), (torch.randn(2, 3, 4),), strict=False)
    with partitioner_reasons() as reasons:
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    record = delegation_record(edge.exported_program().graph_module, reasons)
    assert record["portable_operators"]["aten_cumsum_default"] == 1
    assert "has no rule for this operator" in record["portable_reasons"]["aten_cumsum_default"]
    mean = [op for op in record["portable_operators"] if op.startswith("aten_mean")]
    assert mean and "has no rule" not in record["portable_reasons"][mean[0]]  # the partitioner's own words


def test_node_names_become_operator_names_as_get_delegation_info_counts_them():
    assert operator_name("aten_expand_copy_default_12") == "aten_expand_copy_default"
    assert operator_name("aten_select_copy_int") == "aten_select_copy_int"
