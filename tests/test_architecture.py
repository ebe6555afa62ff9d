"""The package's import graph follows the pipeline: no cycles, no upward imports.

The graph is built from the source (every ``import`` statement, including those
inside functions and under ``TYPE_CHECKING``), so a lazy import cannot hide a
dependency. Layers, lowest first (a module may import its own layer and below)::

    errors, config, atomic, _runtime          leaf primitives
    data                                      datasets, formats, reference tables
    simulator, featurize, datasets (facade)   data producers
    models                                    pure nn.Modules + the network registry
    training, predict, evaluate, plot, runs   fitting, the predict primitive, metrics
    estimators, explain, report               the estimator surface, explanations
    workflows, train (alias)                  paths in, result objects out
    cli, __main__                             entry points

``histexpr/__init__.py`` re-exports from the leaves and data only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import histexpr

SRC = Path(histexpr.__file__).resolve().parent

LAYERS: list[set[str]] = [
    {"errors", "config", "atomic", "_runtime"},
    {"data", ""},  # "" is the package itself (histexpr/__init__.py)
    {"simulator", "featurize", "datasets"},
    {"models"},
    {"training", "predict", "evaluate", "plot", "runs"},
    {"estimators", "explain", "report"},
    {"workflows", "train"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top(module: str) -> str:
    """The layer key of ``histexpr.x.y`` (``x``), ``""`` for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph() -> dict[str, set[str]]:
    """Module -> the histexpr modules it imports (anywhere in its source)."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target == "histexpr" or target.startswith("histexpr."):
                    for alias in node.names:
                        sub = f"{target}.{alias.name}"
                        deps.add(sub if sub in modules else target)
            elif isinstance(node, ast.Import):
                deps.update(
                    a.name
                    for a in node.names
                    if a.name == "histexpr" or a.name.startswith("histexpr.")
                )
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state:
                found = visit(dep)
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


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, deps in sorted(graph.items()):
        here = RANK[top(module)]
        for dep in sorted(deps):
            if RANK[top(dep)] > here:
                bad.append(f"{module} -> {dep}")
    return bad


def test_every_module_has_a_layer():
    missing = sorted({top(m) for m in import_graph()} - set(RANK))
    assert not missing, f"modules outside every layer: {missing}; add them to LAYERS"


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_go_down_the_pipeline():
    bad = upward_imports(import_graph())
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_models_are_pure():
    """The nn.Module layer reads no files and knows no estimators or training."""
    for module, deps in import_graph().items():
        if top(module) == "models":
            assert all(top(d) in {"errors", "config", "models"} for d in deps), (module, deps)


def test_checker_catches_cycles_and_upward_imports():
    graph = {"histexpr.data.a": {"histexpr.models.b"}, "histexpr.models.b": {"histexpr.data.a"}}
    assert find_cycle(graph) is not None
    assert upward_imports(graph) == ["histexpr.data.a -> histexpr.models.b"]


def test_top_level_stays_small():
    flat = sorted(p.name for p in SRC.glob("*.py"))
    assert len(flat) <= 14, flat


def test_metric_code_lives_in_evaluate_only():
    needles = ("roc_auc_score", "spearmanr", "corrcoef", "def _auc", "def _pearson")
    for path in SRC.rglob("*.py"):
        if path.relative_to(SRC).as_posix() == "evaluate.py":
            continue
        text = path.read_text()
        found = [n for n in needles if n in text]
        assert not found, f"{path.relative_to(SRC)} computes metrics itself: {found}"


def private_imports(source: str) -> list[str]:
    """``module.name`` of every ``from histexpr... import _name`` in ``source`` (at any depth)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
            continue
        if node.module != "histexpr" and not node.module.startswith("histexpr."):
            continue
        found += [
            f"{node.module}.{a.name}"
            for a in node.names
            if a.name.startswith("_") and not a.name.startswith("__")
        ]
    return found


def test_no_module_imports_another_modules_private_names():
    bad = [
        f"{path.relative_to(SRC)}: {name}"
        for path in sorted(SRC.rglob("*.py"))
        for name in private_imports(path.read_text())
    ]
    assert not bad, "private names imported across modules (make them public):\n" + "\n".join(bad)


def test_private_import_checker_sees_nested_imports():
    source = "def f():\n    from histexpr.x import _y, z\nfrom histexpr.a import b\n"
    assert private_imports(source) == ["histexpr.x._y"]
    assert private_imports("from histexpr import _runtime\nfrom os import _exit\n") == [
        "histexpr._runtime"
    ]


#: Kind name prefixes only the table of kinds may know (``estimators/kinds.py``).
KIND_PREFIXES = ("atlas-", "diff-")
#: Capabilities a kind declares in the table, never probed on an estimator.
CAPABILITIES = {"predict_pair", "attribute_pair", "side_inputs", "prepare_cells", "defines"}
KINDS_TABLE = "estimators/kinds.py"


def _strings(node) -> list[str]:
    """The string constants of ``node``: a literal, or the literals of a tuple/list."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List) else [node]
    return [n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def kind_guesses(source: str) -> list[str]:
    """Calls in ``source`` that guess what a kind is from its name or its attributes.

    ``x.startswith("atlas-")`` / ``"diff-"`` (any quote style, also in a tuple), and
    ``hasattr(x, NAME)`` or ``getattr(x, NAME, default)`` with NAME a declared capability.
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "startswith":
            found += [f"startswith({s!r})" for s in _strings(node.args[0]) if s in KIND_PREFIXES]
        elif isinstance(func, ast.Name) and func.id in ("hasattr", "getattr"):
            probe = func.id == "hasattr" or len(node.args) == 3
            if probe and len(node.args) >= 2:
                found += [
                    f"{func.id}(..., {s!r})" for s in _strings(node.args[1]) if s in CAPABILITIES
                ]
    return found


def test_no_kind_is_guessed_from_its_name_or_attributes():
    """Every layer asks ``kind_of(kind)``; only the table of kinds spells the prefixes."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).as_posix() == KINDS_TABLE:
            continue
        bad += [f"{path.relative_to(SRC)}: {g}" for g in kind_guesses(path.read_text())]
    assert not bad, "ask histexpr.estimators.kinds.kind_of instead:\n" + "\n".join(bad)


def test_the_kind_guess_checker_sees_every_spelling():
    source = """
a.startswith('atlas-'); b.startswith("diff-"); c.startswith(("atlas-", "auto"))
hasattr(est, 'predict_pair'); hasattr(cls, "defines"); getattr(est, "prepare_cells", None)
name.startswith("E0"); hasattr(x, "close"); getattr(est, "side_inputs")
"""
    assert len(kind_guesses(source)) == 6
