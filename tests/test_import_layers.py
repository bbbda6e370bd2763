"""The import graph of src/mathforge and flows/: no circles, and no import against the layers.

The layers are written once, in the package docstring of `mathforge` ("Which
modules may import which"); this test reads them from there (with `ast`, the
package is not imported).

What counts as an import of module B by module A:
- every `import` and `from ... import` in A, wherever it stands: at the top,
  inside a function or a method. An import moved into a function to dodge a
  circle still ties A to B, and still runs, only later.
- `from P import name` is an import of `P.name` when that is a module,
  otherwise of `P`; `import P.Q.R` is an import of the deepest of these that
  is a module of ours. The parent packages Python also initialises on the way
  are not counted: every module would otherwise depend on its package's
  `__init__`, and a package re-exporting its modules' names (the usual way a
  package presents its API) would be a circle with each of them.
- imports under `if TYPE_CHECKING:` count for the layers but not for circles.
  They never run, so they cannot leave a module half-initialised or make
  imports loop, which is what a circle is about; but a lower module that names
  an upper module's type in its signatures still depends on it, and a reader
  following the annotation must go up.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (ROOT / "src" / "mathforge", ROOT / "flows")

#: Imports allowed against the rules, each with why it stays and how to remove it.
#: Both checks skip these edges; `test_exceptions_are_still_needed` fails once one is gone.
EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    type_checking_only: bool
    names: frozenset[str]  # what `from ... import` takes; empty for `import`


def _module_files() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            parts = list(path.relative_to(package.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = _module_files()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _deepest_module(dotted: str) -> str | None:
    while dotted and dotted not in MODULES:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def _imports_of(module: str) -> list[Import]:
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    type_checking = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and _is_type_checking(block)
        for statement in block.body
        for node in ast.walk(statement)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        names = frozenset()
        if isinstance(node, ast.Import):
            targets = [_deepest_module(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else _deepest_module(source)
                for alias in node.names
            ]
            names = frozenset(alias.name for alias in node.names)
        else:
            continue
        for target in {target for target in targets if target and target != module}:
            found.append(Import(module, target, node.lineno, id(node) in type_checking, names))
    return found


IMPORTS = [found for module in MODULES for found in _imports_of(module)]


def _layers() -> dict[str, tuple[int, str]]:
    """Entry (module, or package with `.*`) -> (layer number, layer name), from the package docstring."""
    docstring = ast.get_docstring(ast.parse((ROOT / "src" / "mathforge" / "__init__.py").read_text(encoding="utf-8")))
    section = docstring.split("Which modules may import which", 1)[1]
    entries = {}
    for number, name, names in re.findall(r"^(\d+)\. ([^:\n]+): (.+)$", section, flags=re.MULTILINE):
        for entry in names.split(", "):
            entries[entry.strip()] = (int(number), name)
    return entries


LAYERS = _layers()


def _entries_of(module: str) -> list[str]:
    return [
        entry
        for entry in LAYERS
        if entry == module or (entry.endswith(".*") and (module + ".").startswith(entry[:-1]))
    ]


def _layer_of(module: str) -> tuple[int, str]:
    return LAYERS[_entries_of(module)[0]]


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm; the components of more than one module, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(edges[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return components


def test_layers_are_declared():
    assert LAYERS, "no layer list found in the docstring of src/mathforge/__init__.py"
    numbers = sorted({number for number, _ in LAYERS.values()})
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_module_has_exactly_one_layer():
    unplaced = [module for module in MODULES if len(_entries_of(module)) != 1]
    assert not unplaced, (
        "modules in no layer entry, or in several, of the docstring of src/mathforge/__init__.py: "
        + ", ".join(f"{module} ({_entries_of(module) or 'none'})" for module in unplaced)
    )
    unused = [entry for entry in LAYERS if not any(entry in _entries_of(module) for module in MODULES)]
    assert not unused, f"layer entries naming no module: {unused}"


def test_no_import_circles():
    counted = [
        found
        for found in IMPORTS
        if not found.type_checking_only and (found.importer, found.imported) not in EXCEPTIONS
    ]
    edges: dict[str, set[str]] = {module: set() for module in MODULES}
    for found in counted:
        edges[found.importer].add(found.imported)
    circles = _strongly_connected(edges)
    report = []
    for members in circles:
        inside = sorted(
            (found.importer, found.line, found.imported)
            for found in counted
            if found.importer in members and found.imported in members
        )
        lines = [f"  {importer}:{line} -> {imported}" for importer, line, imported in inside]
        report.append(f"circle of {len(members)} modules: {', '.join(members)}\n" + "\n".join(lines))
    assert not circles, "import circles (modules that import each other, directly or around):\n" + "\n".join(report)


def test_imports_follow_the_layers():
    upward = []
    for found in IMPORTS:
        if (found.importer, found.imported) in EXCEPTIONS:
            continue
        (low, low_name), (high, high_name) = _layer_of(found.importer), _layer_of(found.imported)
        if high > low:
            where = f"{MODULES[found.importer].relative_to(ROOT)}:{found.line}"
            upward.append(f"  {where}: {found.importer} ({low}. {low_name}) imports {found.imported} ({high}. {high_name})")
    assert not upward, "imports against the layers of src/mathforge/__init__.py:\n" + "\n".join(upward)


def test_exceptions_are_still_needed():
    present = {(found.importer, found.imported) for found in IMPORTS}
    gone = [edge for edge in EXCEPTIONS if edge not in present]
    assert not gone, f"no longer imported, remove from EXCEPTIONS: {gone}"
