"""scripts/import_graph.py: crnn/ has no import loop and imports down its layers, every import counted (inside
functions, under TYPE_CHECKING, modules loaded by name); docs/architecture.md's drawing is the code's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import import_graph  # noqa: E402


def test_the_library_has_no_loop_and_imports_down_its_layers() -> None:
    assert import_graph.problems() == []


def test_every_module_of_the_library_is_in_a_layer() -> None:
    for module in import_graph.module_names():
        import_graph.layer_of(module)  # KeyError names a module no layer holds


def test_the_committed_drawing_is_the_codes() -> None:
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "draw_layers.py"), "--check"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "crnn"
    for name in ["__init__.py", "errors.py", "io/__init__.py", "reading/__init__.py", "commands/__init__.py",
                 *files]:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files.get(name, ""))
    return root


@pytest.mark.parametrize("files, problem", [
    ({"io/a.py": "import importlib\nimportlib.import_module('crnn.reading.r')\n", "reading/r.py": ""},
     "crnn.io.a:2 imports crnn.reading.r (by name): crnn.reading is above crnn.io"),
    ({"io/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from crnn.reading import r\n",
      "reading/r.py": ""}, "crnn.io.a:3 imports crnn.reading.r (import): crnn.reading is above crnn.io"),
    ({"io/a.py": "def f():\n    from crnn.commands.c import g\n", "commands/c.py": "def g(): ...\n"},
     "crnn.io.a:2 imports crnn.commands.c (import): crnn.commands is above crnn.io"),
    ({"commands/a.py": "from crnn.commands import b\n",
      "commands/b.py": "def f():\n    import importlib\n    return importlib.import_module('crnn.commands.a')\n"},
     "module loop: crnn.commands.a -> crnn.commands.b -> crnn.commands.a"),
    ({"io/a.py": "from crnn.errors import E\n", "errors.py": "from crnn.io import a\n"},
     "crnn.errors:1 imports crnn.io.a (import): crnn.io is above crnn.errors"),
])
def test_every_kind_of_import_is_seen(tmp_path: Path, files: dict[str, str], problem: str) -> None:
    graph = import_graph.import_graph(_tree(tmp_path, files))
    assert problem in import_graph.problems(graph)
