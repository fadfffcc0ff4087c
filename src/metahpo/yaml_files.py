"""Reading ``params.yaml`` exactly as DVC reads it, and refusing what would hang or crash the reader.

DVC reads params with ruamel.yaml's safe loader (YAML 1.2: ``010`` is 10 and ``1e-3`` a number, where
PyYAML's YAML 1.1 reads 8 and a text). The stages use the same loader, so ``dvc status``, ``dvc params
diff`` and the stages never disagree on a value. Before anything is built, the composed document is
walked once, visiting each node once however many aliases point at it, and refused with one line naming
the file and key when a key is given twice, an alias refers to itself, the nesting is deeper than
:data:`MAX_DEPTH`, the aliases expand to more than :data:`MAX_VALUES` values (the "billion laughs"), or an
integer has more than :data:`MAX_DIGITS` digits.
"""

from __future__ import annotations

from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from metahpo.errors import InputError, first_line

MAX_DEPTH = 100
MAX_VALUES = 100_000
MAX_DIGITS = 100
INT_TAG = "tag:yaml.org,2002:int"


def load_yaml(path: str | Path, error: type[InputError]):
    """The data of the YAML file ``path`` as DVC reads it; otherwise ``error`` naming the file (and key)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from None
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    line = too_deep_brackets(text)
    if line:
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep (line {line})")
    try:
        node = YAML(typ="safe").compose(text)
        if node is None:
            return None
        problem = check_node(node)
        if problem:
            raise error(f"{path}: {problem}")
        return YAML(typ="safe").load(text)
    except RecursionError:
        raise error(f"{path}: nested more than {MAX_DEPTH} levels deep") from None
    except YAMLError as exc:
        raise error(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None


def too_deep_brackets(text: str) -> int:
    """The line where brackets (``[`` or ``{``) outside quoted scalars and comments open more than
    :data:`MAX_DEPTH` levels, else 0. ruamel.yaml's scanner takes time quadratic in that depth (3,000
    levels take seconds), so this linear count refuses it first."""
    depth, line, quote, last = 0, 1, "", "\n"  # last: the previous character outside quotes, not a blank
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        if quote:
            if ch == "\\" and quote == '"':
                i += 1
            elif ch == quote:
                quote, last = "", ch
        elif ch in "'\"" and last in "\n[{,:-?":  # a quote only starts a scalar, never inside a plain one
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        else:
            if ch in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    return line
            elif ch in "]}":
                depth = max(depth - 1, 0)
            if ch not in " \t":
                last = ch
        i += 1
    return 0


def _yaml_problem(exc: YAMLError) -> str:
    """One line for a ruamel.yaml error: its problem and line, not its multi-line context."""
    if isinstance(exc, MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        return f"{exc.problem}, line {mark.line + 1}" if mark is not None else exc.problem
    return first_line(exc)


def _key_name(key) -> str:
    return str(key.value) if isinstance(key, ScalarNode) else f"<{type(key).__name__} key>"


def _children(node, where: str):
    """``(child, its key path)`` of a node: a mapping's keys and values, a sequence's items."""
    if isinstance(node, MappingNode):
        for key, value in node.value:
            name = _key_name(key)
            yield key, f"{where}.{name}" if where else name
            yield value, f"{where}.{name}" if where else name
    elif isinstance(node, SequenceNode):
        for i, item in enumerate(node.value):
            yield item, f"{where}[{i}]"


def _duplicate(node: MappingNode, where: str) -> str:
    """A key given twice in one mapping, as a problem line (plain YAML would keep one silently)."""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode):
            continue
        name = f"{where}.{key.value}" if where else str(key.value)
        line = key.start_mark.line + 1
        if name in seen:
            return f"{name}: given twice (lines {seen[name]} and {line})"
        seen[name] = line
    return ""


def check_node(root) -> str:
    """The first problem of a composed YAML document, or ``""``; each node is visited once (linear time).

    An alias is the very node it names, so a node reached again is not walked again: its number of values
    once expanded and its height are remembered by identity, and a node reached while it is still being
    walked is an alias to one of its own ancestors (a recursive document).
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    walking: set[int] = set()
    stack = [(root, "", 1, False)]
    while stack:
        node, where, level, done = stack.pop()
        key = id(node)
        shown = (where if len(where) <= 60 else where[:57] + "...") or "the document"
        line = node.start_mark.line + 1
        deep = f"{shown}: nested more than {MAX_DEPTH} levels deep (line {line})"
        if done:
            walking.discard(key)
            kids = [child for child, _ in _children(node, where)]
            size[key] = 1 + sum(size[id(child)] for child in kids)
            height[key] = 1 + max((height[id(child)] for child in kids), default=0)
            if size[key] > MAX_VALUES:
                return f"{shown}: its aliases expand to more than {MAX_VALUES:,} values (line {line})"
            if level + height[key] - 1 > MAX_DEPTH:
                return deep
            continue
        if key in walking:
            return f"{shown}: an alias to itself or a key above it (line {line})"
        if key in size:  # reached again through an alias: already walked
            if level + height[key] - 1 > MAX_DEPTH:
                return deep
            continue
        if level > MAX_DEPTH:
            return deep
        if isinstance(node, ScalarNode):
            digits = sum(ch.isdigit() for ch in node.value) if node.tag == INT_TAG else 0
            if digits > MAX_DIGITS:
                return f"{shown}: an integer of {digits:,} digits, more than {MAX_DIGITS} (line {line})"
            size[key], height[key] = 1, 1
            continue
        if isinstance(node, MappingNode):
            problem = _duplicate(node, where)
            if problem:
                return problem
        walking.add(key)
        stack.append((node, where, level, True))
        stack.extend((child, name, level + 1, False) for child, name in reversed(list(_children(node, where))))
    return ""
