"""The file-level import graph of ``invreg/`` has no circles.

Every ``.py`` file under ``invreg/`` is parsed with :mod:`ast`; every ``import`` and
``from ... import`` counts, at module level and inside functions (a lazy import still ties
the two files together), and so does ``importlib.import_module("invreg....")`` with a literal
name. ``from invreg.x import name`` points at ``invreg/x/name.py`` when ``name`` is a submodule,
else at ``invreg/x`` (its ``__init__.py``); relative imports are resolved. The package
``__init__.py`` files a submodule import runs implicitly are not edges (every submodule would
"import" its own package).
"""

from __future__ import annotations

import ast
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "invreg"

def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _files() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _targets(node: ast.AST, module: str, is_package: bool, modules: dict[str, Path]) -> list[str]:
    """The invreg modules one import node names (dotted names that are keys of ``modules``)."""
    found: list[str] = []

    def add(name: str) -> None:
        # ``import invreg.a.b`` / ``from invreg.a.b import c``: the longest prefix that is a file
        while name and name not in modules:
            name = name.rpartition(".")[0]
        if name:
            found.append(name)

    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == "invreg":
                add(alias.name)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            package = module if is_package else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        if base.split(".")[0] != "invreg":
            return found
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            add(submodule if submodule in modules else base)
    elif (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "import_module"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
        and node.args[0].value.split(".")[0] == "invreg"
    ):
        add(node.args[0].value)
    return found


def import_graph() -> dict[str, set[str]]:
    """File → the files it imports (paths relative to the repository root)."""
    modules = _files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        source = str(path.relative_to(ROOT))
        graph[source] = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            for target in _targets(node, name, path.name == "__init__.py", modules):
                if target != name:
                    graph[source].add(str(modules[target].relative_to(ROOT)))
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one file (a circle of imports), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def shortest_circle(graph: dict[str, set[str]], start: str) -> list[str]:
    """``start → ... → start`` by the fewest imports (breadth first)."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph[node]):
            if target == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [start, *reversed(chain[:-1]), start] if node != start else [start, start]
            if target not in parent:
                parent[target] = node
                queue.append(target)
    return []


def circles(graph: dict[str, set[str]]) -> list[str]:
    """One readable chain per circle: the shortest circle through each file of a component."""
    chains: list[str] = []
    for component in strongly_connected(graph):
        seen: set[tuple[str, ...]] = set()
        for member in component:
            chain = shortest_circle(graph, member)
            key = tuple(sorted(set(chain)))
            if key not in seen:
                seen.add(key)
                chains.append(" -> ".join(chain))
    return chains


def test_the_graph_sees_lazy_relative_and_submodule_imports(tmp_path, monkeypatch):
    """The parser counts what the circle check relies on (a check that sees nothing passes)."""
    graph = import_graph()
    # module level, ``from invreg.x import name`` with ``name`` a function of a package
    assert "invreg/losses/__init__.py" in graph["invreg/modules/invariance.py"] or any(
        target.startswith("invreg/losses/") for target in graph["invreg/modules/invariance.py"]
    )
    # an import inside a function counts: cli's dispatch to ``invreg report``
    assert "invreg/report/__init__.py" in graph["invreg/cli.py"]
    modules = {"invreg": ROOT, "invreg.a": ROOT, "invreg.a.b": ROOT, "invreg.a.c": ROOT}
    relative = ast.parse("from . import c\nfrom .c import f\nfrom .. import a\n")
    found = [t for node in ast.walk(relative) for t in _targets(node, "invreg.a.b", False, modules)]
    assert found == ["invreg.a.c", "invreg.a.c", "invreg.a"]
    lazy = ast.parse("def f():\n    import invreg.a.b.missing\n    from invreg.a import c, g\n")
    found = [t for node in ast.walk(lazy) for t in _targets(node, "invreg", True, modules)]
    assert sorted(found) == ["invreg.a", "invreg.a.b", "invreg.a.c"]


def test_circles_are_reported_as_chains():
    graph = {"a.py": {"b.py"}, "b.py": {"c.py"}, "c.py": {"a.py"}, "d.py": {"a.py"}}
    assert circles(graph) == ["a.py -> b.py -> c.py -> a.py"]
    assert circles({"a.py": {"b.py"}, "b.py": set()}) == []


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles between files of invreg/:\n  " + "\n  ".join(found)


#: the layers, bottom up (docs/architecture.md): a file imports files of its own layer or below
LAYERS: list[tuple[str, ...]] = [
    ("config.py", "checkpoints.py", "console.py"),
    ("groups",),
    ("functional",),
    ("metrics", "evaluation.py", "testing.py"),
    ("losses", "models"),
    ("modules", "data", "callbacks", "runs.py", "plotting.py"),
    ("cli_core.py", "report"),
    ("cli.py", "quickstart.py", "experiments"),
]


def _layer(path: str) -> int:
    top = Path(path).relative_to("invreg").parts[0]
    if top == "__init__.py":
        return -1  # the package's own __init__ imports nothing of invreg
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_no_file_imports_a_higher_layer():
    graph = import_graph()
    unplaced = sorted(
        {Path(f).relative_to("invreg").parts[0] for f in graph}
        - {name for layer in LAYERS for name in layer} - {"__init__.py"}
    )
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {unplaced}"
    upward = [f"{source} (layer {_layer(source)}) -> {target} (layer {_layer(target)})"
              for source, targets in sorted(graph.items()) for target in sorted(targets)
              if _layer(target) > _layer(source)]
    assert not upward, "imports of a higher layer:\n  " + "\n  ".join(upward)
