"""The manual's generated parts, rendered from the code so they cannot drift from it.

Each generated part sits in a hand-written page between ``<!-- BEGIN GENERATED: <part> -->`` and
``<!-- END GENERATED -->``: the recipe fields (vitq.recipe's schema), the variant table (vitq.variants) and the
``vitq`` command (vitq.cli's parser). ``python docs/gen_pages.py`` rewrites them (``make docs`` runs it);
``--check`` only compares and exits 1 naming each stale page (``make test`` and tests/test_docs.py run it).
Imports nothing that loads torch.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # run as a script from anywhere: vitq is the checkout's

from vitq import recipe as recipe_schema  # noqa: E402
from vitq.cli import build_parser  # noqa: E402
from vitq.variants import VARIANTS  # noqa: E402

BLOCK = re.compile(r"(<!-- BEGIN GENERATED: (?P<part>[a-z-]+) -->\n)(?P<body>.*?)(<!-- END GENERATED -->)", re.S)
HELP_WIDTH = 100  # argparse wraps usage lines to the terminal: a fixed width keeps the page the same everywhere


# ---------------------------------------------------------------- recipe fields


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def _value(value: Any) -> str:
    return '`""`' if value == "" else f"`{value if isinstance(value, str) else json.dumps(value)}`"


def _constraints(metadata: list[Any]) -> list[str]:
    words = []
    for item in metadata:
        for attr, sign in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            if getattr(item, attr, None) is not None and isinstance(item, getattr(annotated_types, attr.capitalize())):
                words.append(f"{sign} {getattr(item, attr)}")
        if isinstance(item, annotated_types.MultipleOf):
            words.append(f"multiple of {item.multiple_of}")
        if isinstance(item, annotated_types.MinLen) and item.min_length > 1:
            words.append(f"at least {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length}")
    if len(words) == 2 and words[0].startswith("at least") and words[0][9:] == words[1][8:]:
        words = [f"exactly {words[1][8:]}"]
        for nested in getattr(item, "metadata", []) or []:
            words += _constraints([nested])
    return words


def _type(annotation: Any, metadata: list[Any] = ()) -> str:
    """A field's type as a user writes it in YAML, with its allowed values and bounds."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return _type(args[0], [*metadata, *args[1:]])
    bounds = _constraints(list(metadata))
    suffix = f" ({', '.join(bounds)})" if bounds else ""
    if origin is Literal:
        return ("one of " if len(args) > 1 else "") + ", ".join(_value(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(_type(a) for a in args if a is not type(None))
    if origin is list:
        inner = _type(args[0])
        if inner.startswith("one of "):
            return f"list{suffix}, each {inner}"
        return f"list{suffix} of {inner}"
    if origin is dict:
        return "mapping"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"section [{annotation.__name__.lower()}]"
    names = {bool: "`true` or `false`", int: "integer", float: "number", str: "text"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation))) + suffix


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    default = field.default
    if default is PydanticUndefined or default is None:
        return "none"
    if isinstance(default, BaseModel):
        return "its defaults"
    return _value(default)


def _allowed(field: Any) -> str:
    values = (field.json_schema_extra or {}).get("values") if isinstance(field.json_schema_extra, dict) else None
    text = _type(field.annotation, field.metadata)
    if values:
        text += ": " + ", ".join(_value(v) for v in values)
    return re.sub(r"section \[(\w+)\]", "section", text)


def _model(annotation: Any) -> type[BaseModel] | None:
    return recipe_schema._model_of(annotation)


HEADER = ["| field | type and allowed values | default | what |", "| --- | --- | --- | --- |"]


def _row(dotted: str, field: Any) -> str:
    return f"| `{dotted}` | {_cell(_allowed(field))} | {_default(field)} | {_cell(field.description or '')} |"


def _section(prefix: str, model: type[BaseModel]) -> list[str]:
    """One section's table, then the tables of the sections nested in it."""
    out = ["", f"### `{prefix}`", ""]
    if model.__doc__ and model.__doc__ is not recipe_schema._Section.__doc__:
        out += [" ".join(model.__doc__.replace("``", "`").split()), ""]
    out += HEADER
    nested = []
    for name, field in model.model_fields.items():
        out.append(_row(f"{prefix}.{name}", field))
        if _model(field.annotation) is not None:
            nested.append((f"{prefix}.{name}", _model(field.annotation)))
    for dotted, sub in nested:
        out += _section(dotted, sub)
    return out


def recipe_fields() -> str:
    """Every recipe field: a table per section, in schema order, with type, allowed values, default and meaning."""
    out = list(HEADER)
    sections = []
    for name, field in recipe_schema.Recipe.model_fields.items():
        if name in ("name", "source"):  # set from the file, never written
            continue
        out.append(_row(name, field))
        if _model(field.annotation) is not None:
            sections.append((name, _model(field.annotation)))
    for name, model in sections:
        out += _section(name, model)
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- variants


def variants() -> str:
    """The variant table (vitq/variants.py), one row per variant in table order."""
    out = ["| variant | file | format | made from | runtime | engine | built when | shipped |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v in VARIANTS:
        when = [f"`{r}`" for r in v.requires] + ([f"`executorch.quantize` lists `{v.strategy}`"] if v.strategy else [])
        shipped = "yes" if v.shipped else "no (in memory, evaluated only)"
        if v.strategy:
            shipped = "yes, when it is the candidate that ships"
        file = f"`{v.file}`" if v.file else "(in memory)"
        parents = " or ".join(f"`{p}`" for p in v.parents) or "(the recipe)"
        engine = "recipe's `quantize.engine`" if v.engine == "recipe" else ""
        out.append(f"| `{v.id}` | {file} | {v.format} | {parents} | {v.label} ({v.runtime}) | {engine} | "
                   f"{' and '.join(when) or 'always'} | {shipped} |")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- the vitq command


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                found += nested or [(f"{prefix} {name}", sub)]
    return found


def cli() -> str:
    """Each command's help as ``vitq COMMAND --help`` prints it, at a fixed width."""
    parser = build_parser()
    out = []
    for name, sub in [("vitq", parser), *_commands(parser, "vitq")]:
        sub.formatter_class = lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=HELP_WIDTH)
        summary = ("Every command, as `vitq --help` lists them." if sub is parser
                   else sub.description.split("\n\n")[0].replace("\n", " "))
        out += [f"## `{name}`", "", summary, "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(out)


PARTS: dict[str, Callable[[], str]] = {"recipe-fields": recipe_fields, "variants": variants, "cli": cli}


def render(text: str) -> str:
    """The page with every generated block rewritten from the code."""
    def block(match: re.Match[str]) -> str:
        part = match["part"]
        if part not in PARTS:
            raise SystemExit(f"unknown generated part {part!r} (known: {', '.join(PARTS)})")
        return f"{match[1]}{PARTS[part]()}{match[4]}"
    return BLOCK.sub(block, text)


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if BLOCK.search(p.read_text(encoding="utf-8")))


def stale() -> list[str]:
    """Pages whose generated blocks differ from what the code renders now."""
    return [str(p.relative_to(DOCS.parent)) for p in pages()
            if render(p.read_text(encoding="utf-8")) != p.read_text(encoding="utf-8")]


def main(argv: list[str] | None = None) -> int:
    check = "--check" in (argv if argv is not None else sys.argv[1:])
    if check:
        for page in stale():
            print(f"{page}: generated part is stale; run make docs (python docs/gen_pages.py)")
        return 1 if stale() else 0
    for page in pages():
        text = page.read_text(encoding="utf-8")
        if render(text) != text:
            page.write_text(render(text), encoding="utf-8")
            print(f"{page.relative_to(DOCS.parent)}: regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
