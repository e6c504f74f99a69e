"""vitq.bench.chart on hand-made reports (tests/test_bench.py checks the chart of a real bench is a PNG): one row
per variant, the mobile artifact's size bar in green and no other, and reports with failed or partly measured
variants still drawn."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vitq.bench.chart import chart

GREEN = np.array([44, 160, 44])  # matplotlib's tab:green


def variant(id_, size, p50s, engine=None):
    return {"id": id_, "label": f"{id_} [{engine}]" if engine else id_, "bytes": size, "error": None,
            "batches": {b: {"p50_ms": v, "p90_ms": v * 1.2} for b, v in p50s.items()}}


def report(variants, mobile="lite", batch_sizes=(1, 8)):
    return {"recipe": {"name": "toy", "model": "timm:toy"}, "host": {"cpu": "Test CPU"}, "threads": 2,
            "batch_sizes": list(batch_sizes), "mobile": mobile, "variants": variants}


def rows(n):
    names = ["fp32", "int8_eager", "lite", "onnx_int8", "pte"]
    return [variant(f"{names[i % 5]}{'' if i < 5 else i}", None if i == 1 else 1_000_000 * (i + 1),
                    {"1": 2.0 + i, "8": 10.0 + 3 * i}) for i in range(n)]


def drawn(tmp_path, data, name="bench.png"):
    out = tmp_path / name
    chart(data, out)
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB")).astype(np.int16)


def green_pixels(pixels):
    return int((np.abs(pixels - GREEN).sum(axis=2) < 30).sum())


@pytest.fixture(scope="module")
def charts(tmp_path_factory):
    """Five variants with the mobile one among them; twelve without it, some of them measured in part: one at
    batch 1 only, one at 0 ms (below the timer's resolution), one failed."""
    folder = tmp_path_factory.mktemp("chart")
    twelve = report(rows(12), mobile="none-of-these")
    twelve["variants"][1]["batches"].pop("8")
    twelve["variants"][2]["batches"]["1"].update(p50_ms=0.0, p90_ms=0.0)
    twelve["variants"][3].update(batches={}, error="RuntimeError: boom")
    return drawn(folder, report(rows(5)), "five.png"), drawn(folder, twelve, "twelve.png")


def test_every_variant_gets_a_row_so_the_chart_grows_with_them_measured_in_full_or_not(charts):
    five, twelve = charts
    assert five.shape[1] == twelve.shape[1]
    assert twelve.shape[0] > five.shape[0] * 1.7


def test_the_mobile_artifacts_size_bar_is_green_and_no_other_is(charts):
    five, twelve = charts
    assert green_pixels(five) > 500 and green_pixels(twelve) == 0


def test_a_report_where_every_variant_failed_is_still_drawn(tmp_path):
    data = report(rows(4))
    for v in data["variants"]:
        v.update(batches={}, error="RuntimeError: boom")
    pixels = drawn(tmp_path, data)
    assert green_pixels(pixels) > 100  # the size panel is all there is

