"""The import rules of CONTRIBUTING.md, checked on the source, in the manner of import-linter (no dependency).

Every module under pipeline/ and dashboard/ is parsed with `ast`; its static imports, those inside functions
included, make the graph. Two kinds of import are left out: those under `if TYPE_CHECKING:` (they never run),
and the function-level imports of pipeline/config.py, which by CONTRIBUTING reads the registries and torch only
inside the functions that need them so that `import pipeline.config` stays light. Each rule's checker returns one
line per violation naming the module, the line and the import (the chain of imports when it is indirect); the
checkers are also run on small in-memory module sets that break each rule, so no rule passes vacuously.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("pipeline", "dashboard")
HEAVY = ("torch", "torchvision", "captum", "pytorch_lightning", "lightning")  # a model: seconds to import
TORCH_PAGES = ("dashboard.views.upload", "dashboard.uploads")  # the Upload page and its model part
LAZY_BY_RULE = ("pipeline.config",)  # function-level imports not counted (CONTRIBUTING: config stays light)


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports, resolved to a module where one of ours matches (`from pipeline import store`)
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


Graph = dict[str, list[Import]]


def read_sources(root: Path = REPO_ROOT) -> dict[str, str]:
    """Module name -> source text of every .py file under the packages."""
    sources = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            sources[name] = path.read_text(encoding="utf-8")
    return sources


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _statements(tree: ast.AST, lazy: bool = False):
    """(import node, inside a function) for every import that can run: TYPE_CHECKING blocks skipped."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                yield from _statements(ast.Module(body=[child], type_ignores=[]), lazy)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, lazy
        yield from _statements(node, lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))


def import_graph(sources: dict[str, str]) -> Graph:
    """Every module's imports, relative ones resolved; `from a import b` targets a.b when that is a module."""
    graph: Graph = {}
    for name, text in sources.items():
        is_package = any(other.startswith(name + ".") for other in sources)
        found = []
        for node, lazy in _statements(ast.parse(text, filename=name)):
            if lazy and name in LAZY_BY_RULE:
                continue
            if isinstance(node, ast.Import):
                found += [Import(name, alias.name, node.lineno) for alias in node.names]
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append(Import(name, sub if sub in sources else base, node.lineno))
        graph[name] = found
    return graph


def _runs(graph: Graph, imp: Import) -> list[str]:
    """Our modules that executing `imp` runs: the target and the packages above it."""
    parts = imp.target.split(".")
    return [m for m in (".".join(parts[:i]) for i in range(1, len(parts) + 1)) if m in graph]


def chain_to(graph: Graph, start: str, bad: Callable[[Import], bool]) -> list[Import] | None:
    """The shortest chain of imports from `start` through our modules to an import that is `bad`."""
    seen, queue = {start}, deque([(start, [])])
    while queue:
        module, path = queue.popleft()
        for imp in graph[module]:
            if bad(imp):
                return [*path, imp]
            for nxt in _runs(graph, imp):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append((nxt, [*path, imp]))
    return None


def _describe(chain: list[Import]) -> str:
    return " -> ".join(str(imp) for imp in chain)


def _top(imp: Import) -> str:
    return imp.target.split(".")[0]


def _under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def pipeline_imports_dashboard(graph: Graph) -> list[str]:
    """(a) The store is the only contract between the halves: pipeline never imports streamlit or dashboard."""
    return [f"{imp} (pipeline never imports streamlit or dashboard)"
            for module in graph if _under(module, "pipeline")
            for imp in graph[module] if _top(imp) in ("streamlit", "dashboard")]


def dashboard_imports_torch(graph: Graph) -> list[str]:
    """(b) Only the Upload page loads a model; every other dashboard module stays torch-free, through pipeline too."""
    out = []
    for module in graph:
        if _under(module, "dashboard") and module not in TORCH_PAGES:
            chain = chain_to(graph, module, lambda imp: _top(imp) in HEAVY)
            if chain:
                allowed = ", ".join(TORCH_PAGES)
                out.append(f"{module} imports {_top(chain[-1])} (only {allowed} may): {_describe(chain)}")
    return out


def data_imports_models(graph: Graph) -> list[str]:
    """(c) Data knows images and labels, not networks: nothing under pipeline.data reaches pipeline.models."""
    out = []
    for module in graph:
        if _under(module, "pipeline.data"):
            chain = chain_to(graph, module, lambda imp: _under(imp.target, "pipeline.models"))
            if chain:
                out.append(f"{module} imports pipeline.models: {_describe(chain)}")
    return out


def import_cycles(graph: Graph, package: str = "pipeline") -> list[str]:
    """(d) Each cycle among the package's modules (Tarjan's strongly connected components), with one loop spelt out."""
    nodes = [m for m in graph if _under(m, package)]
    edges = {m: [imp for imp in graph[m] if imp.target in graph and _under(imp.target, package)] for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for imp in edges[v]:
            w = imp.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            components.append(sorted(component))

    for v in nodes:
        if v not in index:
            visit(v)
    out = []
    for component in components:
        first = component[0]
        inside = set(component)
        loop = chain_to({m: [i for i in edges[m] if i.target in inside] for m in component}, first,
                        lambda imp, first=first: imp.target == first)
        if loop and (len(component) > 1 or loop[0].target == first):
            out.append(f"import cycle among {', '.join(component)}: {_describe(loop)}")
    return out


def imports_reaching(graph: Graph, module: str, target: str) -> list[str]:
    """(e) `module` must not import `target`, directly or through other modules."""
    chain = chain_to(graph, module, lambda imp: _under(imp.target, target)) if module in graph else None
    return [f"{module} imports {target}: {_describe(chain)}"] if chain else []


def layer_rules(graph: Graph) -> list[str]:
    """(e) Steps that stay apart: scoring writes nothing, training evaluates nothing."""
    return imports_reaching(graph, "pipeline.evaluate", "pipeline.store") + imports_reaching(
        graph, "pipeline.train", "pipeline.evaluate")


# ---------------------------------------------------------------- the real code

REAL = import_graph(read_sources())


def _ok(problems: list[str]) -> None:
    assert not problems, "\n".join(problems)


def test_the_graph_reads_the_real_code():
    """The graph holds both halves and finds a real chain to torch (the Upload page's), so the rules see something."""
    assert {"pipeline.train", "pipeline.evaluate", "pipeline.data.sources", "dashboard.views.upload"} <= set(REAL)
    assert chain_to(REAL, "dashboard.views.upload", lambda imp: _top(imp) in HEAVY)
    assert chain_to(REAL, "pipeline.experiment", lambda imp: imp.target == "pipeline.store")


def test_pipeline_never_imports_streamlit_or_dashboard():
    _ok(pipeline_imports_dashboard(REAL))


def test_dashboard_imports_torch_only_on_the_upload_page():
    _ok(dashboard_imports_torch(REAL))


def test_data_never_imports_models():
    _ok(data_imports_models(REAL))


def test_pipeline_imports_have_no_cycles():
    _ok(import_cycles(REAL))


def test_evaluate_does_not_import_store_and_train_does_not_import_evaluate():
    _ok(layer_rules(REAL))


# ---------------------------------------------------------------- each rule fails on a bad module set

FAKE = {
    "pipeline": "",
    "pipeline.config": "import yaml\ndef rules():\n    import torch\n    from pipeline.models import net\n",
    "pipeline.store": "import duckdb\nfrom pipeline.config import ConfigError\n",
    "pipeline.heavy": "from . import store\n\ndef later():\n    import torch\n",
    "pipeline.plot": "from dashboard.ui import chart\n",
    "pipeline.data": "",
    "pipeline.data.images": "from ..models.net import Net\n",
    "pipeline.data.cache": "from pipeline.data import images\n",
    "pipeline.models": "",
    "pipeline.models.net": "import torch\n",
    "pipeline.evaluate": "from pipeline.heavy import later\n",
    "pipeline.train": "from pipeline import evaluate\n",
    "pipeline.a": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pipeline import b\n",
    "pipeline.b": "def f():\n    from pipeline import c\n",
    "pipeline.c": "from pipeline.b import f\n",
    "dashboard": "",
    "dashboard.ui": "import streamlit as st\n",
    "dashboard.queries": "from pipeline import store\n",
    "dashboard.views.curves": "from dashboard.queries import x\n\ndef plot():\n    from pipeline.heavy import later\n",
    "dashboard.views.upload": "from pipeline.models.net import Net\n",
}


def test_each_checker_names_the_module_and_import_that_break_its_rule():
    graph = import_graph(FAKE)
    assert pipeline_imports_dashboard(graph) == [
        "pipeline.plot:1 imports dashboard.ui (pipeline never imports streamlit or dashboard)"]
    assert dashboard_imports_torch(graph) == [
        "dashboard.views.curves imports torch (only dashboard.views.upload, dashboard.uploads may): "
        "dashboard.views.curves:4 imports "
        "pipeline.heavy -> pipeline.heavy:4 imports torch"]
    assert data_imports_models(graph) == [
        "pipeline.data.images imports pipeline.models: pipeline.data.images:1 imports pipeline.models.net",
        "pipeline.data.cache imports pipeline.models: pipeline.data.cache:1 imports pipeline.data.images -> "
        "pipeline.data.images:1 imports pipeline.models.net"]
    assert import_cycles(graph) == [
        "import cycle among pipeline.b, pipeline.c: pipeline.b:2 imports pipeline.c -> pipeline.c:1 imports pipeline.b"]
    assert layer_rules(graph) == [
        "pipeline.evaluate imports pipeline.store: pipeline.evaluate:1 imports pipeline.heavy -> "
        "pipeline.heavy:1 imports pipeline.store",
        "pipeline.train imports pipeline.evaluate: pipeline.train:1 imports pipeline.evaluate"]


def test_a_module_importing_itself_is_a_cycle_and_a_clean_set_passes_every_rule():
    assert import_cycles(import_graph({"pipeline": "", "pipeline.x": "from pipeline import x\n"})) == [
        "import cycle among pipeline.x: pipeline.x:1 imports pipeline.x"]
    clean = import_graph({"pipeline": "", "pipeline.config": "import yaml\n", "pipeline.store": "import duckdb\n",
                          "dashboard.queries": "from pipeline import store\n"})
    checks = (pipeline_imports_dashboard, dashboard_imports_torch, data_imports_models, import_cycles, layer_rules)
    assert [check(clean) for check in checks] == [[]] * len(checks)
