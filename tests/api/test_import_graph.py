"""The API's modules form no import circle (issue 24): not at module level, not inside functions.

The graph is read from the source (ast): every `from vitcli.api.X import …` at any depth counts, except
under `if TYPE_CHECKING:` (never run). Each module also imports on its own in a fresh interpreter,
so no module relies on another having been imported first.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import vitcli.api

API = Path(vitcli.api.__file__).parent
MODULES = sorted(f"vitcli.api.{p.stem}" for p in API.glob("*.py") if p.stem != "__init__")


def _runtime_imports(path: Path) -> set[str]:
    """The vitcli.api modules `path` imports when it runs (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    hidden = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
              for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found & set(MODULES)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph as a path back to its start, or None (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1 on the path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    return next((c for m in sorted(graph) if m not in state and (c := visit(m))), None)


def test_the_cycle_finder_finds_a_planted_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_api_modules_import_no_circle() -> None:
    graph = {m: _runtime_imports(API / f"{m.rsplit('.', 1)[1]}.py") - {m} for m in MODULES}
    assert "vitcli.api.results" in graph and graph["vitcli.api.models"], "the graph was read"
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_results_is_a_low_module() -> None:
    """The result classes import no command: every command and the CLI can import them."""
    assert _runtime_imports(API / "results.py") <= {"vitcli.api.display", "vitcli.api.documents"}
    assert _runtime_imports(API / "display.py") <= {"vitcli.api.documents"}
    assert _runtime_imports(API / "documents.py") == set()  # the typed documents: the lowest module


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module: str) -> None:
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
