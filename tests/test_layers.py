"""The package's layers, checked from its import graph (every import, lazy ones inside functions too).

    entry points   cli, demo, __main__, __init__         may import anything
    report/        figures, paper                        foundations and fit's readers: it draws files, never fits
    grid/          specs, plans, runner, store, ...      foundations, tasks, trainer, hf
    fit/           laws, models, inference, ...          foundations only: tables in, posteriors out
    hf/            checkpoints and their tokenizers      foundations, tasks, trainer
    trainer/       model, train step, decode, ...        foundations, tasks
    tasks/         families, mixtures, grading, ...      foundations
    foundations    errors, schema, provenance, staging, interrupts, results, cache, typed_toml, power, user_files
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "scaling"
FOUNDATIONS = {"errors", "schema", "provenance", "staging", "interrupts", "results", "cache", "typed_toml", "power",
               "user_files"}
ENTRY = {"cli", "demo", "__main__", "__init__"}
MAY_IMPORT = {
    "foundations": {"foundations"},
    "tasks": {"foundations", "tasks"},
    "trainer": {"foundations", "tasks", "trainer"},
    "hf": {"foundations", "tasks", "trainer", "hf"},
    "fit": {"foundations", "fit"},
    "report": {"foundations", "fit", "report"},
    "grid": {"foundations", "tasks", "trainer", "hf", "grid"},
}
FITTING = {"scaling.fit.infer", "scaling.fit.command", "scaling.fit.models", "scaling.fit.huber", "scaling.fit.backtest",
           "scaling.fit.groups", "scaling.fit.compare", "scaling.fit.free_curves"}


def layer(module: str) -> str:
    """The layer of a dotted module name under scaling."""
    parts = module.split(".")[1:] or ["__init__"]
    if parts[0] in FOUNDATIONS:
        return "foundations"
    if parts[0] in ENTRY:
        return "entry"
    assert parts[0] in MAY_IMPORT, f"{module} is in no layer: add it to a subpackage or to the foundations"
    return parts[0]


def imports() -> dict[str, set[str]]:
    """Every scaling module and the scaling modules it imports."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names if alias.name.startswith("scaling")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolved against this module's package
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                if base.startswith("scaling"):
                    # `from scaling.x import y` may name a submodule y: count it when it is one
                    found |= {f"{base}.{a.name}" if (PACKAGE.parent / f"{base}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                              or (PACKAGE.parent / f"{base}.{a.name}".replace(".", "/")).is_dir() else base for a in node.names}
        graph[module] = found
    return graph


GRAPH = imports()


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if layer(m) != "entry"))
def test_each_module_imports_only_its_own_layer_and_those_below(module):
    allowed = MAY_IMPORT[layer(module)]
    wrong = sorted(imported for imported in GRAPH[module] if layer(imported) not in allowed)
    assert not wrong, f"{module} ({layer(module)}) imports {wrong}"


def test_reports_never_fit():
    fitting = {(m, i) for m in GRAPH if layer(m) == "report" for i in GRAPH[m] if i in FITTING}
    assert not fitting


def test_there_is_no_cycle_between_modules():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in GRAPH.get(module, ()):
            if state.get(imported) == "open":
                raise AssertionError(" -> ".join(path[path.index(imported):] + [imported]) if imported in path else imported)
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_violation():
    # The rules are only as good as the graph: a trainer module that imported the grid would be caught.
    assert "scaling.trainer.train" in GRAPH and layer("scaling.grid.runner") not in MAY_IMPORT["trainer"]
    assert any(i.startswith("scaling.grid") for i in GRAPH["scaling.grid.runner"])
