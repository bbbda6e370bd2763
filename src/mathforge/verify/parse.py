"""Answer structure: lists, sets, tuples, intervals, matrices, relations and atoms.

A cleaned answer string becomes a small tree of nodes; only the leaves (atoms)
are mathematics, handed to latex2sympy2_extended by `values.py`. Structure is
decided here rather than by the LaTeX grammar because the grammar alone cannot
tell `(1, 3)` the point from `(1, 3)` the interval, or `1,234` the number from a
list: the comparison needs both readings. What comes from where:

* MATH grader tradition (hendrycks, MARIO): comma lists, `x =` prefixes,
  mixed numbers, base subscripts, multiple-choice letters.
* Math-Verify: equation chains reduced to their last value (`x = 5+5+1 = 11`),
  an equation whose left side is only a name (`k = 1`, `f(x) = ...`, `|AB| = 1`)
  compared by its right side, `\\pm` expanded into both branches, the
  thousands-vs-set reading of `1,234`, decimal commas (`1,22`).
* Extended: assignments grouped into solution tuples (`p=5,q=2;p=7,q=2`),
  a name followed by bare values (`a = 4, -8, -10`), clock times, `cases`
  systems as unordered sets of equations.

The splitter is a bracket-depth scanner over the text (linear time, mismatched
interval brackets allowed); it is not a LaTeX parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from mathforge.verify.normalize import split_currency, split_percent, split_units

ItemsKind = Literal["list", "set", "tuple", "mapping", "ratio"]


@dataclass(frozen=True)
class Atom:
    """A single value: a number, an expression, or words."""

    text: str
    percent: bool = False
    unit: str = ""


@dataclass(frozen=True)
class Items:
    """A collection: bare list, set, bracketed tuple/interval, name mapping, or ratio."""

    kind: ItemsKind
    items: tuple[Node, ...]
    brackets: str = ""
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetUnion:
    """A union of intervals or sets (`\\cup`)."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Matrix:
    """A matrix or vector environment, row by row."""

    rows: tuple[tuple[Node, ...], ...]


@dataclass(frozen=True)
class Assign:
    """`name = value` or `name \\in value`: compared by the value."""

    name: str
    value: Node


@dataclass(frozen=True)
class Equation:
    """An equation whose left side is not a bare name (`2x + 4y - 3 = 0`)."""

    lhs: Node
    rhs: Node


@dataclass(frozen=True)
class Relation:
    """An inequality chain (`-2 \\le x < 7`); parts as text, operators canonical."""

    parts: tuple[str, ...]
    ops: tuple[str, ...]


@dataclass(frozen=True)
class Clock:
    """A time of day, seconds after midnight (`08:34 \\text{P.M.}`)."""

    seconds: int


Node = Atom | Items | SetUnion | Matrix | Assign | Equation | Relation | Clock

_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = frozenset(")]}")
_RELATION_OPS = ("=", "<", ">", r"\le", r"\ge", r"\ne", r"\approx", r"\in", r"\implies")
_GREEK = (
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi rho sigma "
    "tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi Omega"
)
_GREEK_RE = re.compile(r"\\(?:" + "|".join(_GREEK.split()) + r")(?![a-zA-Z])")
_NAME_DECORATIONS = re.compile(
    r"\\(?:frac|overline|overrightarrow|vec|hat|bar|tilde|angle|measuredangle|triangle|text|operatorname)(?![a-zA-Z])"
)
_ENVIRONMENT = re.compile(r"\\begin\{(\w+\*?)\}(.*)\\end\{\1\}", re.DOTALL)
_THOUSANDS = re.compile(r"[+-]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d+)?")
_CLOCK = re.compile(
    r"(\d{1,2}):(\d{2})(?::(\d{2}))?\s*(?:\\text\{\s*)?(?:([AaPp])\.?\s*[Mm]\.?)?\s*\}?"
)


def scan_top(text: str, separators: tuple[str, ...]) -> list[tuple[int, str]]:
    """Return (position, separator) of each separator found outside all brackets.

    Brackets may mismatch (`[0, 1)`); `\\{`, `\\}` and `\\begin`/`\\end` count as
    brackets; a command separator (`\\le`) must not continue as a longer name.
    """
    found = []
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\":
            if text.startswith("\\begin", i) or text.startswith("\\{", i):
                depth += 1
            elif text.startswith("\\end", i) or text.startswith("\\}", i):
                depth = max(0, depth - 1)
            elif depth == 0:
                for sep in separators:
                    if sep.startswith("\\") and text.startswith(sep, i):
                        after = i + len(sep)
                        if after >= n or not text[after].isalpha():
                            found.append((i, sep))
                            break
            command = re.match(r"\\(?:[a-zA-Z]+|.)", text[i:])
            i += len(command.group()) if command else 1
            continue
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth = max(0, depth - 1)
        elif depth == 0 and char in separators:
            found.append((i, char))
        i += 1
    return found


def split_top(text: str, separators: tuple[str, ...]) -> list[str]:
    """Split `text` on separators found outside brackets (see `scan_top`)."""
    pieces = []
    start = 0
    for position, sep in scan_top(text, separators):
        pieces.append(text[start:position])
        start = position + len(sep)
    pieces.append(text[start:])
    return pieces


def outer_brackets(text: str) -> tuple[str, str, str] | None:
    """Return (open, inside, close) when one bracket pair encloses all of `text`."""
    if text.startswith("\\{"):
        opener, body_start = "\\{", 2
    elif text[:1] in _OPENERS:
        opener, body_start = text[0], 1
    else:
        return None
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        if text.startswith("\\{", i) or text.startswith("\\begin", i):
            depth += 1
            i += 2
            continue
        if text.startswith("\\}", i) or text.startswith("\\end", i):
            depth -= 1
            if depth == 0:
                return (opener, text[body_start:i], "\\}") if i + 2 == n else None
            i += 2
            continue
        if text[i] == "\\":
            i += 2
            continue
        if text[i] in _OPENERS:
            depth += 1
        elif text[i] in _CLOSERS:
            depth -= 1
            if depth == 0:
                return (opener, text[body_start:i], text[i]) if i + 1 == n else None
        i += 1
    return None


def is_name(text: str) -> bool:
    r"""Tell whether `text` only names a quantity (`x`, `f(x)`, `a_{37}`, `|AB|`, `(p,q)`, `V_1:V_2`).

    Such a left side labels the value on the right; anything with numbers or
    operators (`a + 3z`, `\sin x`) makes a real equation instead.
    """
    name = text.strip()
    if not name or len(name) > 60:
        return False
    name = _GREEK_RE.sub("a", name)
    name = _NAME_DECORATIONS.sub("", name)
    if "\\" in name:
        return False
    name = re.sub(r"_\{[^{}]*\}|_\w", "", name)
    name = re.sub(r"(?<=[A-Za-z'])\([^()]*\)", "", name)
    name = re.sub(r"[{}()\[\]|,:/'\s]", "", name)
    return name.isalpha()


def expand_plus_minus(text: str) -> tuple[str, ...]:
    r"""Return both branches of a `\pm` expression (signs correlated, `\mp` opposite), or the text itself."""
    if r"\pm" not in text and r"\mp" not in text:
        return (text,)
    plus = re.sub(r"\\mp(?![a-zA-Z])", "-", re.sub(r"\\pm(?![a-zA-Z])", "+", text))
    minus = re.sub(r"\\mp(?![a-zA-Z])", "+", re.sub(r"\\pm(?![a-zA-Z])", "-", text))
    return (plus, minus)


def parse_answer(text: str) -> tuple[Node, ...]:
    """Parse a cleaned answer into its readings (usually one).

    A bare `12,34` is both a list and a number with a decimal comma, and
    `20:34` both a ratio and a clock time; the comparison accepts a match of
    any reading.
    """
    text = text.strip()
    readings: list[Node] = []
    clock = _clock(text)
    if clock is not None:
        readings.append(clock)
        if not re.fullmatch(r"\d{1,2}:\d{2}", text):
            return tuple(readings)
    core, _ = split_percent(split_units(split_currency(text))[0])
    if _THOUSANDS.fullmatch(core):
        return (parse_atom(text.replace(",", "")),)
    if re.fullmatch(r"[+-]?\d+,\d+", core):
        readings.append(parse_atom(text.replace(",", ".")))
    readings.append(parse_node(text))
    return tuple(readings)


def parse_node(text: str) -> Node:
    """Parse one piece of an answer into a node (recursively)."""
    text = text.strip()
    groups = [group for group in split_top(text, (";",)) if group.strip()]
    if len(groups) > 1:
        return group_items([parse_node(group) for group in groups])
    items = [item for item in split_top(text, (",",)) if item.strip()]
    if len(items) > 1:
        return group_items([parse_node(item) for item in items])
    if len(items) == 1 and items[0].strip() != text:
        return parse_node(items[0])
    parts = split_top(text, (r"\cup",))
    if len(parts) > 1:
        return SetUnion(tuple(parse_node(part) for part in parts))
    relation = _relation(text)
    if relation is not None:
        return relation
    environment = _environment(text)
    if environment is not None:
        return environment
    wrapped = outer_brackets(text)
    if wrapped is not None:
        return _bracketed(*wrapped)
    ratio = split_top(text, (":",))
    if len(ratio) > 1 and all(piece.strip() for piece in ratio) and r"\text" not in text:
        return Items("ratio", tuple(parse_node(piece) for piece in ratio))
    return parse_atom(text)


def parse_atom(text: str) -> Node:
    r"""Make an atom: split off percent, currency and units; expand `\pm` into a set."""
    branches = expand_plus_minus(text)
    if len(branches) > 1:
        return Items("set", tuple(parse_atom(branch) for branch in branches))
    core = split_currency(text)
    core, unit = split_units(core)
    core, percent = split_percent(core)
    core = split_currency(core)
    return Atom(core or text, percent=percent, unit=unit)


def group_items(nodes: list[Node]) -> Node:
    """Build a list node, reading assignments as solutions.

    `x = 2, x = -3` is the list of x's values; `a_3 = 2, a_{37} = 19` a mapping
    compared name by name; `p=5, q=2, p=7, q=2` two solution tuples (a repeated
    name starts the next one); `a = 4, -8, -10` is `a` taking three values.
    """
    assigns = [node for node in nodes if isinstance(node, Assign)]
    if nodes and isinstance(nodes[0], Assign) and len(assigns) == 1:
        rest = tuple(_flatten_sets(nodes[1:]))
        return Assign(nodes[0].name, Items("list", (nodes[0].value, *rest)))
    if assigns and len(assigns) == len(nodes):
        names = [_name_key(node.name) for node in assigns]
        if len(set(names)) == 1:
            return Items("list", tuple(_flatten_sets([node.value for node in assigns])))
        if len(set(names)) == len(names):
            return Items("mapping", tuple(node.value for node in assigns), names=tuple(names))
        groups: list[list[Assign]] = [[]]
        for node, name in zip(assigns, names):
            if name in {_name_key(member.name) for member in groups[-1]}:
                groups.append([])
            groups[-1].append(node)
        return Items("list", tuple(group_items(list(group)) for group in groups))
    return Items("list", tuple(_flatten_sets(nodes)))


def _flatten_sets(nodes: list[Node] | tuple[Node, ...]) -> list[Node]:
    """Inline `\\pm` branch sets into a surrounding list of solutions."""
    out: list[Node] = []
    for node in nodes:
        if isinstance(node, Items) and node.kind == "set" and not node.brackets:
            out.extend(node.items)
        else:
            out.append(node)
    return out


def _name_key(name: str) -> str:
    return re.sub(r"[{}\s]", "", name)


def _relation(text: str) -> Node | None:
    found = scan_top(text, _RELATION_OPS)
    if not found:
        return None
    parts = split_top(text, _RELATION_OPS)
    ops = [op for _, op in found]
    if any(not part.strip() for part in parts):
        return None
    parts = [part.strip() for part in parts]
    if r"\approx" in ops:
        # Keep the exact value before an approximation; "x \approx 11" has no other value.
        first = ops.index(r"\approx")
        if is_name(parts[first]):
            parts, ops = parts[: first + 2], [*ops[:first], "="]
        else:
            parts, ops = parts[: first + 1], ops[:first]
        if not ops:
            return parse_node(parts[0])
    if r"\implies" in ops:
        return parse_node(parts[-1])
    if r"\in" in ops:
        if len(parts) == 2 and is_name(parts[0]):
            return Assign(parts[0], parse_node(parts[1]))
        return None
    if all(op == "=" for op in ops):
        if is_name(parts[0]) and not is_name(parts[-1]) or len(parts) == 2 and is_name(parts[0]):
            return Assign(parts[0], parse_node(parts[-1]))
        if len(parts) >= 3:
            return parse_node(parts[-1])
        return Equation(parse_node(parts[0]), parse_node(parts[1]))
    if "=" in ops:
        return None
    return Relation(tuple(parts), tuple(ops))


def _environment(text: str) -> Node | None:
    match = _ENVIRONMENT.fullmatch(text)
    if match is None or "\\end{" + match.group(1) + "}" in match.group(2):
        return None
    name, body = match.group(1).rstrip("*"), match.group(2)
    if name == "array":
        body = re.sub(r"^\s*\{[^{}]*\}", "", body)
    rows = [
        row
        for row in re.split(r"\\\\(?:\[[^\]]*\])?", body)
        if row.strip() and not re.fullmatch(r"\s*\\hline\s*", row)
    ]
    if name.endswith("matrix") or name == "array":
        return Matrix(tuple(tuple(parse_node(cell) for cell in row.split("&")) for row in rows))
    if name in {"cases", "aligned", "align", "gathered", "gather", "split", "eqnarray"}:
        return Items("set", tuple(parse_node(row.replace("&", " ")) for row in rows), brackets="cases")
    return None


def _bracketed(opener: str, inside: str, closer: str) -> Node:
    items = [item for item in split_top(inside, (",",)) if item.strip()]
    if len(items) == 1:
        items = [item for item in split_top(inside, (";",)) if item.strip()]
    if opener in ("{", "\\{"):
        if opener == "{" and len(items) == 1:
            return parse_node(inside)
        return Items("set", tuple(_flatten_sets([parse_node(item) for item in items])), brackets="{}")
    if len(items) == 1:
        return parse_node(inside)
    return Items("tuple", tuple(parse_node(item) for item in items), brackets=opener + closer)


def _clock(text: str) -> Clock | None:
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds = int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)
    if minutes >= 60 or seconds >= 60 or hours > 24:
        return None
    meridian = (match.group(4) or "").lower()
    if meridian:
        if not 1 <= hours <= 12:
            return None
        hours = hours % 12 + (12 if meridian == "p" else 0)
    return Clock(hours * 3600 + minutes * 60 + seconds)
