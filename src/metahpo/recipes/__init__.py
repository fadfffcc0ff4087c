"""Named recipes: presets of params that a user selects in one command.

A recipe is ``recipes/<name>.yaml``: a flat mapping of dotted keys (``tasks.shots``) to values. Applying
one writes those values into ``params.yaml`` in place, keeping its comments and every key the recipe
leaves alone, after validating the result as the stages do (the command, :mod:`metahpo.recipes.__main__`,
imports ``metahpo.search``, which registers the algorithms' and the search's names and rules); ``params.yaml``
stays the one source the stages and DVC read, so ``dvc params diff`` shows every value a recipe changed
and ``-S`` overrides stack on top of it::

    python -m metahpo.recipes omniglot && dvc exp run -n omniglot
    python -m metahpo.recipes images tasks.root=data/raw/letters   # key=value: more overrides after it

``sinusoid`` (the defaults) sets every key that any other recipe sets back to its default, so switching
recipes never leaves a key of the previous one behind.
"""

from __future__ import annotations

import copy
import io
import sys
from pathlib import Path

import yaml

from metahpo.atomic import write_text
from metahpo.errors import ConfigError, first_line
from metahpo.params import validate

RECIPES = Path("recipes")
PARAMS = Path("params.yaml")


def recipe_names(folder: Path = RECIPES) -> list[str]:
    """The recipes in ``folder``, by name."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_recipe(name: str, folder: Path = RECIPES) -> dict:
    """The dotted keys and values of recipe ``name``; an unknown name or a malformed file is a one-line error."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"{path}: no such recipe (known: {', '.join(recipe_names(folder)) or 'none'})")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({first_line(exc)})") from None
    if not isinstance(values, dict) or not all(isinstance(k, str) and k for k in values):
        raise ConfigError(f"{path}: expected a mapping of dotted keys (tasks.shots: 1) to values")
    return values


def parse_override(text: str) -> tuple[str, object]:
    """``key=value`` (the value read as YAML, as ``dvc exp run -S`` does) as ``(key, value)``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"{text!r}: expected key=value (e.g. tasks.root=data/raw/letters)")
    try:
        return key, yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{text!r}: the value is not valid YAML ({first_line(exc)})") from None


def _set(tree, dotted: str, value, source: str):
    """Set an existing ``dotted`` key of ``tree`` to ``value``; return the value it had."""
    keys = dotted.split(".")
    node = tree
    for i, key in enumerate(keys[:-1]):
        if not isinstance(node, dict) or key not in node or not isinstance(node[key], dict):
            raise ConfigError(f"{source}: {dotted}: {'.'.join(keys[: i + 1])} is not a section of params.yaml")
        node = node[key]
    if keys[-1] not in node:
        raise ConfigError(f"{source}: {dotted}: no such key in params.yaml")
    old, node[keys[-1]] = node[keys[-1]], value
    return old


def apply_recipe(name: str, overrides: list[str] = (), params: Path = PARAMS, folder: Path = RECIPES) -> dict:
    """Write recipe ``name`` and then ``overrides`` (``key=value``) into ``params``; return the values changed.

    Nothing is written unless the result is valid params (every problem is listed, as the stages list them).
    """
    from ruamel.yaml import YAML

    values = load_recipe(name, folder)
    extra = dict(parse_override(text) for text in overrides)
    rt = YAML()  # round trip: comments, order and layout stay as they are
    rt.width = 4096
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    try:
        document = rt.load(params.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{params}: unreadable ({first_line(exc)})") from None
    plain = yaml.safe_load(params.read_text(encoding="utf-8"))
    before = {}
    for source, items in ((str(folder / f"{name}.yaml"), values), ("override", extra)):
        for key, value in items.items():
            old = _set(plain, key, value, source)
            before.setdefault(key, old)
            _set_kept(document, key, value, source)
    problems = validate(plain)
    if problems:
        raise ConfigError("\n".join(f"recipe {name}: {p}" for p in problems))
    out = io.StringIO()
    rt.dump(document, out)
    write_text(params, out.getvalue())
    return {k: (before[k], _get(plain, k)) for k in before if before[k] != _get(plain, k)}


def with_recipe(raw: dict, name: str, folder: Path = RECIPES) -> dict:
    """A copy of the params ``raw`` (a plain mapping) with recipe ``name`` applied; nothing is written."""
    return with_values(raw, load_recipe(name, folder), str(folder / f"{name}.yaml"))


def with_values(raw: dict, values: dict, source: str) -> dict:
    """A copy of the params ``raw`` with each existing dotted key of ``values`` set; ``source`` names them in errors."""
    tree = copy.deepcopy(raw)
    for key, value in values.items():
        _set(tree, key, value, source)
    return tree


def _set_kept(document, dotted: str, value, source: str) -> None:
    """Set ``dotted`` in the round-trip ``document``; a mapping value sets its keys one by one, keeping the layout."""
    if (
        isinstance(value, dict)
        and isinstance(_get(document, dotted), dict)
        and set(value) == set(_get(document, dotted))
    ):
        for key, sub in value.items():
            _set_kept(document, f"{dotted}.{key}", sub, source)
        return
    _set(document, dotted, _flow(value), source)


def _get(tree: dict, dotted: str):
    for key in dotted.split("."):
        tree = tree[key]
    return tree


def _flow(value):
    """Lists and mappings written inline (``[1, 5]``), as params.yaml writes them."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, list):
        seq = CommentedSeq(_flow(v) for v in value)
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap((k, _flow(v)) for k, v in value.items())
        mapping.fa.set_flow_style()
        return mapping
    return value


def main(argv: list[str] | None = None) -> int:
    """``python -m metahpo.recipes NAME [key=value ...]``: apply a recipe to ./params.yaml."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m metahpo.recipes NAME [key=value ...]\nrecipes: {', '.join(recipe_names())}")
        return 0 if args else 2
    try:
        changed = apply_recipe(args[0], args[1:])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for key, (old, new) in changed.items():
        print(f"{key}: {old!r} -> {new!r}")
    print(f"params.yaml: recipe {args[0]} ({len(changed)} values changed); run it with: dvc exp run -n {args[0]}")
    return 0
