"""The house's layers: every import of the project's own modules points to its own layer or one below,
and no import circle exists, counting the imports written inside functions (an import moved into a
function to dodge a cycle still ties the two modules together).

The graph is built from the source files with :mod:`ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: module prefix -> layer, lowest first; a module takes the layer of its longest matching prefix
LAYERS: dict[str, int] = {
    "harness": 0,  # the package root: hookimpl and the version
    "harness.base": 0,  # errors, options, model loading, threads, memory: no harness import above
    "harness.compat": 0,  # the versioned seams with libraries
    "harness.grading": 0,  # answer extraction and equivalence
    "harness.tiny": 0,  # the embedded models' table and weights
    "harness.core": 1,  # value types and plugin interfaces, the registry, the run graph
    "harness.toolkit": 2,  # what plugins build with: compression, generation, profiling, rewards
    "harness.runs": 3,  # planning, the runner and its stages, the store and cache
    "harness.sweeps": 4,  # sweep files, cells, execute_job
    "harness.api": 4,  # the public plugin API: re-exports from the layers below
    "harness.strategies": 5,  # the built-in plugins, one folder per kind
    "harness.trainers": 5,
    "harness.benchmarks": 5,
    "harness.engines": 5,
    "harness.executors": 5,
    "harness.reports": 6,  # export, model card, lm-eval results, training curves
    "harness.leaderboard": 6,
    "harness.cli": 7,  # the command line on top
}
#: installed package name -> folder in the checkout
FOLDERS = {"harness": ROOT / "harness", "harness.leaderboard": ROOT / "leaderboard"}


def project_modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            if "published" in path.parts:
                continue
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``module`` imports, wherever in the file the import is written."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            found = _resolve(target, known)
            if found and found != module and not module.startswith(found + "."):
                out.add(found)
    return out


def layer_of(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one module (iterative: no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = project_modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def test_the_graph_sees_every_module_and_the_function_level_imports(graph):
    assert len(graph) > 100
    # an import written inside a function counts: the fresh evaluation process plans through planning
    assert "harness.runs.planning" in graph["harness.runs.evaluate"]
    assert "harness.core.hookspecs" in graph["harness.core.plugin_manager"]


def test_no_import_circle(graph):
    assert strongly_connected(graph) == []


def test_the_cycle_finder_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_points_to_its_own_layer_or_below(graph):
    upward = sorted(
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(module)
    )
    assert upward == []


def test_every_module_has_a_layer(graph):
    assert all(layer_of(module) >= 0 for module in graph)
    unplaced = [m for m in graph if m.count(".") == 1 and m not in LAYERS and not m.startswith("harness.tiny")]
    assert unplaced == [], "a module directly under harness/ sits in no layer folder"
