"""The manual (docs/) and the README state things about the code that could drift from it: the generated parts
(recipe fields, variant table, the vitq command), the variant table's rows, the environment variables vitq reads,
the layer table (tests/test_layering.py), links, and the recipe examples a user copies."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from vitq.errors import RecipeError
from vitq.recipe import load_recipe
from vitq.variants import VARIANTS

from conftest import REPO

DOCS = REPO / "docs"
README = (REPO / "README.md").read_text(encoding="utf-8")
# Set by vitq for its own child processes, never by a user.
INTERNAL_VARIABLES = {"VITQ_PROGRESS_FD", "VITQ_RESULT_FD"}


def gen_pages():
    spec = importlib.util.spec_from_file_location("gen_pages", DOCS / "gen_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def manual() -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(DOCS.glob("*.md")))


def test_the_generated_parts_of_the_manual_are_what_the_code_renders_now():
    assert gen_pages().stale() == [], "run make docs (python docs/gen_pages.py) and commit the pages"


def test_a_page_whose_generated_part_drifted_is_named_stale_and_regenerated(tmp_path, monkeypatch):
    pages = gen_pages()
    shutil.copytree(DOCS, tmp_path / "docs")
    page = tmp_path / "docs" / "artifacts.md"
    page.write_text(page.read_text().replace("| `pte_none` |", "| `pte_gone` |"))
    monkeypatch.setattr(pages, "DOCS", tmp_path / "docs")
    assert pages.stale() == ["docs/artifacts.md"]
    assert pages.main(["--check"]) == 1
    assert pages.main([]) == 0 and pages.stale() == []
    assert "| `pte_none` |" in page.read_text()


def test_the_manual_builds_in_strict_mode_without_a_broken_link_or_anchor(tmp_path):
    """What make test runs (docs-check): mkdocs build --strict fails on a link to a missing page or heading."""
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")]
    proc = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "site" / "recipes" / "index.html").is_file()
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\n[fields](recipes.md#no-such-heading)\n")
    proc = subprocess.run(build, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "no-such-heading" in proc.stderr


def variant_table() -> list[list[str]]:
    """The rows of the variant table in docs/artifacts.md: cells without their backticks."""
    section = (DOCS / "artifacts.md").read_text(encoding="utf-8").split("## Variants", 1)[1]
    table = re.search(r"^\| variant \|.*?(?=\n<!--|\n\n)", section, re.M | re.S).group(0)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


def test_the_manuals_variant_table_lists_every_variant_with_its_file_in_table_order():
    rows = variant_table()
    assert [r[0] for r in rows] == [v.id for v in VARIANTS]
    for row, variant in zip(rows, VARIANTS, strict=True):
        assert row[1] == (variant.file or "(in memory)"), variant.id
        assert row[-1].startswith("yes") == variant.shipped, variant.id
        assert ("recipe's" in row[5]) == (variant.engine == "recipe"), variant.id


def test_every_recipe_field_is_documented_with_a_description():
    fields = gen_pages().recipe_fields()
    rows = [line for line in fields.splitlines() if line.startswith("| `")]
    assert all(not row.rstrip().endswith("|  |") for row in rows), [r for r in rows if r.rstrip().endswith("|  |")]
    page = (DOCS / "recipes.md").read_text(encoding="utf-8")
    for dotted in ("executorch.quantize", "weights.train.epochs", "checks.max_portable_nodes", "calibration.count"):
        assert f"| `{dotted}` |" in page, dotted


def test_every_environment_variable_vitq_reads_is_documented_in_the_manual():
    code = "".join(p.read_text(encoding="utf-8") for p in [*(REPO / "vitq").rglob("*.py"), REPO / "dodo.py"])
    read = set(re.findall(r"\"(VITQ_[A-Z_]+)\"", code)) - INTERNAL_VARIABLES
    documented = set(re.findall(r"`(VITQ_[A-Z_]+)", manual()))
    assert read and read <= documented, sorted(read - documented)
    assert documented <= read | INTERNAL_VARIABLES, sorted(documented - read)
    table = (DOCS / "building.md").read_text(encoding="utf-8").split("## Environment variables", 1)[1]
    assert read <= set(re.findall(r"`(VITQ_[A-Z_]+)`", table.split("\n## ", 1)[0])), "building.md's table"


def test_the_readme_is_a_front_door_whose_links_into_the_manual_resolve():
    lines = README.splitlines()
    assert len(lines) <= 170 and "make build" in README and "make test" in README
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", README)
    linked = {link.removeprefix("docs/") for link in links}
    nav = set(re.findall(r":\s+([a-z0-9-]+\.md)$", (REPO / "mkdocs.yml").read_text(), re.M))
    assert linked == nav, sorted(linked ^ nav)  # every page once, none missing
    assert all((REPO / link).is_file() for link in links)


def test_the_recipe_examples_in_the_manual_load(tmp_path):
    """A YAML block headed `# recipes/<name>.yaml` is a recipe a user copies next to the shipped ones: it must
    validate as shown."""
    for recipe in (REPO / "recipes").glob("*.yaml"):
        shutil.copy(recipe, tmp_path)
    examples = re.findall(r"```yaml\n# recipes/([a-z0-9_]+\.yaml)\n(.*?)```", manual(), re.S)
    assert len(examples) >= 2
    for name, block in examples:
        assert "extends" in yaml.safe_load(block), name
        (tmp_path / name).write_text(block)
        assert load_recipe(tmp_path / name).name == name.removesuffix(".yaml")


def test_the_refusal_the_manual_quotes_is_what_the_example_without_its_nulls_gets(tmp_path):
    for recipe in (REPO / "recipes").glob("*.yaml"):
        shutil.copy(recipe, tmp_path)
    page = (DOCS / "recipes.md").read_text(encoding="utf-8")
    block = re.search(r"```yaml\n# recipes/digits_photos.yaml\n(.*?)```", page, re.S).group(1)
    quoted = re.search(r"^recipes/digits_photos.yaml: (.*)$", page, re.M).group(1)
    (tmp_path / "digits_photos.yaml").write_text("".join(line for line in block.splitlines(True) if ": null" not in line))
    with pytest.raises(RecipeError) as refused:
        load_recipe(tmp_path / "digits_photos.yaml")
    assert str(refused.value).endswith(f"digits_photos.yaml: {quoted}")
