"""The library's import graph read from its source, every import counted: top-level, inside functions, under
``if TYPE_CHECKING:``, and modules loaded by name (any string literal that names a crnn module, e.g. in
``importlib.import_module("crnn.x")`` or a table of module names).

``python scripts/import_graph.py`` checks that the graph has no loop, between modules or between packages, and
that every import goes down the layers of docs/architecture.md (LAYERS); it exits 1 naming each import that does
not. tests/test_import_graph.py runs it; scripts/draw_layers.py draws the same graph.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROOT = "crnn"

# The layers of the library, top first. A module may import modules of its own package, of a lower layer, and
# nothing above; packages of one layer import none of each other. The two base layers are the library's
# top-level modules that every layer shares.
LAYERS: list[tuple[str, ...]] = [
    ("crnn.cli", "crnn"),  # the `crnn` dispatcher and the public API (crnn/__init__.py), both by name
    ("crnn.commands",),
    ("crnn.detection",),  # full-photo OCR: detectors, line crops, word splits, the photo reader (extra [detect])
    ("crnn.kinds",),
    ("crnn.reading",),
    ("crnn.checkpoints",),
    ("crnn.models", "crnn.decoding", "crnn.io"),
    ("crnn.frozen_config",),  # pydantic-free configs (PreprocessConfig); crnn.config's pydantic only on a bad value
    ("crnn.charset", "crnn.config", "crnn.machine", "crnn.metrics", "crnn.output_files", "crnn.prediction"),
    ("crnn.errors",),
]


def module_names(root: Path = REPO / ROOT) -> dict[str, Path]:
    """Every module of the package: dotted name -> file (a package is its __init__.py)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _resolve(module: str, level: int, importer: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = importer.split(".") if is_package else importer.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int, str]]:
    """(imported module, line, how) for each import of ``name``'s source, at any depth; ``how`` is "import",
    "by name" (a string literal naming a module)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, "import"
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, name, is_package)
            yield base, node.lineno, "import"
            for alias in node.names:  # `from crnn.io import image_loader` imports a module
                if f"{base}.{alias.name}" in known:
                    yield f"{base}.{alias.name}", node.lineno, "import"
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known \
                and node.value != ROOT:  # "crnn" alone is also a model type's name
            yield node.value, node.lineno, "by name"


def import_graph(root: Path = REPO / ROOT) -> dict[str, dict[str, tuple[int, str]]]:
    """importer -> {imported crnn module: (line, how)}, imports of the package itself (``crnn``) left out for
    modules below it (Python runs crnn/__init__.py first anyway; only ``from crnn import name`` would add one)."""
    known = module_names(root)
    graph: dict[str, dict[str, tuple[int, str]]] = {}
    for name, path in known.items():
        edges: dict[str, tuple[int, str]] = {}
        for target, line, how in imports_of(name, path, set(known)):
            # The nearest module: `import crnn.io.preprocess` names the module; a name inside one is its module.
            while target and target not in known:
                target = target.rpartition(".")[0]
            if not target or target == name or (target == ROOT and how == "import" and _imports_only_version(path)):
                continue
            edges.setdefault(target, (line, how))
        graph[name] = edges
    return graph


def _imports_only_version(path: Path) -> bool:
    # `from crnn import __version__` reads a constant of the package, not a module.
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == ROOT and node.level == 0:
            if any(a.name != "__version__" for a in node.names):
                return False
    return True


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, top first; the layer's package or module that holds ``module``)."""
    best: tuple[int, str] | None = None
    for i, layer in enumerate(LAYERS):
        for unit in layer:
            if module == unit or (unit != ROOT and module.startswith(unit + ".")):
                if best is None or len(unit) > len(best[1]):
                    best = (i, unit)
    if best is None:
        raise KeyError(f"{module} is in no layer of LAYERS (scripts/import_graph.py)")
    return best


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One loop of ``graph`` (its nodes, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the path, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def problems(graph: dict[str, dict[str, tuple[int, str]]] | None = None) -> list[str]:
    """Every import that breaks the layers, and one loop of modules and of layer units if there is one."""
    graph = import_graph() if graph is None else graph
    out = []
    for importer, edges in sorted(graph.items()):
        li, ui = layer_of(importer)
        for target, (line, how) in sorted(edges.items()):
            lt, ut = layer_of(target)
            if ui != ut and lt <= li:
                where = "above" if lt < li else "beside"
                out.append(f"{importer}:{line} imports {target} ({how}): {ut} is {where} {ui}")
    cycle = find_cycle({m: set(e) for m, e in graph.items()})
    if cycle:
        out.append("module loop: " + " -> ".join(cycle))
    units: dict[str, set[str]] = {}
    for importer, edges in graph.items():
        ui = layer_of(importer)[1]
        units.setdefault(ui, set()).update(layer_of(t)[1] for t in edges if layer_of(t)[1] != ui)
    cycle = find_cycle(units)
    if cycle:
        out.append("package loop: " + " -> ".join(cycle))
    return out


def main() -> int:
    graph = import_graph()
    found = problems(graph)
    for line in found:
        print(line)
    edges = sum(len(e) for e in graph.values())
    print(f"{len(graph)} modules, {edges} imports: " + ("no loop, every import goes down the layers" if not found
                                                         else f"{len(found)} problems"))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
