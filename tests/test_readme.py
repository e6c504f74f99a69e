"""What the README states about the code and could drift from it: the variant table and the environment
variables vitq reads."""

from __future__ import annotations

import re

from vitq.variants import VARIANTS

from conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
# Set by vitq for its own child processes, never by a user.
INTERNAL_VARIABLES = {"VITQ_PROGRESS_FD", "VITQ_RESULT_FD"}


def variant_table() -> list[list[str]]:
    """The rows of the table under '### Variants': cells without their backticks."""
    section = README.split("### Variants", 1)[1]
    table = re.search(r"^\| variant \|.*?(?=\n\n)", section, re.M | re.S).group(0)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


def test_the_readme_variant_table_lists_every_variant_with_its_file_in_table_order():
    rows = variant_table()
    assert [r[0] for r in rows] == [v.id for v in VARIANTS]
    for row, variant in zip(rows, VARIANTS, strict=True):
        assert row[1] == (variant.file or "(in memory)"), variant.id
        assert row[-1].startswith("yes") == variant.shipped, variant.id
        assert ("recipe's" in row[3]) == (variant.engine == "recipe"), variant.id


def test_every_environment_variable_vitq_reads_is_documented():
    code = "".join(p.read_text(encoding="utf-8") for p in [*(REPO / "vitq").rglob("*.py"), REPO / "dodo.py"])
    read = set(re.findall(r"\"(VITQ_[A-Z_]+)\"", code)) - INTERNAL_VARIABLES
    documented = set(re.findall(r"`(VITQ_[A-Z_]+)", README))
    assert read and read <= documented, sorted(read - documented)
    assert documented <= read | INTERNAL_VARIABLES, sorted(documented - read)
