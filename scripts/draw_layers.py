"""Draw the library's import layers from its source into docs/architecture.md, so the drawing cannot drift.

The drawing is a Mermaid graph (GitHub renders it): one box per layer, top first (scripts/import_graph.py's
LAYERS), one node per package (the base modules, which every layer imports, in one node), and one arrow per
importing pair of packages, labelled with its number of imports (every import counted: inside functions, under
TYPE_CHECKING, and modules named in strings). It replaces what lies between the two marker lines of
docs/architecture.md.

    python scripts/draw_layers.py          # rewrite the drawing
    python scripts/draw_layers.py --check  # exit 1 when the committed drawing is not the code's (the tests run it)
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from import_graph import LAYERS, REPO, import_graph, layer_of  # noqa: E402

DOC = REPO / "docs" / "architecture.md"
BEGIN = "<!-- import layers: drawn by scripts/draw_layers.py from the code; do not edit by hand -->"
END = "<!-- end of the drawing -->"
LAYER_NAMES = ["entry points", "commands", "kinds", "reading", "checkpoints", "models, decoding, io"]
BASE = len(LAYER_NAMES)  # LAYERS from this index on: the base modules, drawn as one node


def _node(unit: str) -> str:
    return unit.replace(".", "_")


def _label(unit: str) -> str:
    if unit == "crnn":
        return "__init__.py: the public API"
    return unit.removeprefix("crnn.") + ("/" if _is_package(unit) else ".py")


def _is_package(unit: str) -> bool:
    return (REPO / unit.replace(".", "/") / "__init__.py").exists()


def drawing() -> str:
    """The Mermaid block of the import layers, as the code stands."""
    graph = import_graph()
    modules = Counter(layer_of(m)[1] for m in graph)
    arrows: Counter[tuple[str, str]] = Counter()
    for importer, edges in graph.items():
        for target in edges:
            a, b = layer_of(importer)[1], layer_of(target)[1]
            if a != b:
                arrows[a, b] += 1
    lines = ["```mermaid", "flowchart TB"]
    for i, layer in enumerate(LAYERS[:BASE]):
        lines.append(f'    subgraph L{i}["{LAYER_NAMES[i]}"]')
        lines.append("        direction LR")
        for unit in layer:
            n = modules[unit]
            size = f" ({n} modules)" if _is_package(unit) and unit != "crnn" else ""
            lines.append(f'        {_node(unit)}["{_label(unit)}{size}"]')
        lines.append("    end")
    base = [unit.removeprefix("crnn.") for layer in LAYERS[BASE:] for unit in layer]
    lines.append(f'    base["base: {", ".join(base)}"]')
    for i in range(BASE):
        lines.append(f"    L{i} ~~~ {f'L{i + 1}' if i + 1 < BASE else 'base'}")  # keeps the layers stacked
    for (a, b), n in sorted(arrows.items(), key=lambda kv: (layer_of(kv[0][0])[0], kv[0])):
        if layer_of(b)[0] < BASE:  # every layer imports the base modules: no arrows into them
            lines.append(f"    {_node(a)} -->|{n}| {_node(b)}")
    lines.append("```")
    total = sum(len(e) for e in graph.values())
    lines.append(f"{len(graph)} modules, {total} imports between them; an arrow's number counts the imports from "
                 "one package's modules into another's. Every layer also imports the base modules.")
    return "\n".join(lines)


def with_drawing(doc: str) -> str:
    """``doc`` with its drawing (between BEGIN and END) replaced by the code's."""
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC}: the marker lines of the drawing are missing:\n{BEGIN}\n{END}")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{drawing()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only say whether the committed drawing is current")
    args = p.parse_args(argv)
    doc = DOC.read_text()
    new = with_drawing(doc)
    if args.check:
        if new != doc:
            print(f"{DOC.relative_to(REPO)}: the drawing of the import layers is out of date; run "
                  "python scripts/draw_layers.py", file=sys.stderr)
            return 1
        return 0
    if new != doc:
        DOC.write_text(new)
        print(f"rewrote the drawing in {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
