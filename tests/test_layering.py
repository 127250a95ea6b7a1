"""The direction of imports between the packages of `src/llamafarm` (docs/architecture.md).

Every `import` statement counts: at module level, inside functions (imported late only to
save start-up time, still a dependency) and under `TYPE_CHECKING` (a type that names a
package above is still knowledge of it, and the first step to a runtime import).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "llamafarm"
"""The tree of this checkout, whichever copy of the package is installed."""

LAYERS: list[set[str]] = [
    {"cli"},
    {"api"},
    {"examples"},
    {"tasks"},
    {"components"},
    {"datasets", "chat"},
    {"models", "ingest"},
    {"rag"},
    {"projects", "events", "system", "onnx", "documents"},
    {"config", "state", "http"},
    {"settings", "names", "registry", "shared", "bundled", "ui"},
    {"residents"},
    {"formats"},
    {"errors", "llamafarm"},
]
"""Top to bottom. A unit (a top-level package or module of `llamafarm`; `llamafarm` is the
package's own `__init__`, its version) may import only units of a lower layer: never one above,
nor one beside it, so two features stay independent and no cycle can form."""

WEB = ("fastapi", "starlette")
"""Only `api` (and `cli`, which serves it) may import the web framework."""


def _unit(module: str) -> str:
    """The unit of a module; a name from `llamafarm` itself (`__version__`) is the root's."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in _units() else "llamafarm"


def _imports(package: list[str], text: str) -> set[str]:
    """Every module a file of `package` imports, absolute; `from x import name` also gives
    `x.name`, since the name may be a module (`from llamafarm import events`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            if module != "llamafarm":  # the root only by what its names say
                found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def _graph() -> dict[str, dict[str, set[str]]]:
    """unit -> imported unit or web framework -> the files (relative to src) that import it."""
    graph: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for path in sorted(SRC.rglob("*.py")):
        name = str(path.relative_to(SRC.parent))
        module = ".".join(path.relative_to(SRC.parent).with_suffix("").parts)
        source = _unit(module.removesuffix(".__init__"))
        package = list(path.relative_to(SRC.parent).parts[:-1])
        for imported in _imports(package, path.read_text(encoding="utf-8")):
            top = imported.split(".")[0]
            if top == "llamafarm":
                # `from llamafarm import events` names the unit in the alias, not the module.
                target = _unit(imported)
                if target != source:
                    graph[source][target].add(name)
            elif top in WEB:
                graph[source][top].add(name)
    return graph


def _layer(unit: str) -> int:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    raise AssertionError(f"{unit!r} is in no layer of LAYERS: add it (and to docs/architecture.md)")


@cache
def _units() -> frozenset[str]:
    return frozenset(
        "llamafarm" if p.name == "__init__.py" else p.stem
        for p in SRC.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").is_file()) and p.name != "__main__.py"
    )


def test_every_unit_has_a_layer() -> None:
    for unit in _units():
        _layer(unit)
    listed = set().union(*LAYERS)
    assert listed <= _units(), f"LAYERS names units that are gone: {sorted(listed - _units())}"


def test_imports_go_only_down() -> None:
    wrong = [
        f"{source} (layer {_layer(source)}) imports {target} (layer {_layer(target)}): "
        f"{sorted(files)}"
        for source, targets in _graph().items()
        for target, files in targets.items()
        if target not in WEB and _layer(target) <= _layer(source)
    ]
    assert not wrong, "\n".join(wrong)


def test_only_the_api_imports_the_web_framework() -> None:
    wrong = [
        f"{source} imports {target}: {sorted(files)}"
        for source, targets in _graph().items()
        for target, files in targets.items()
        if target in WEB and source not in {"api", "cli"}
    ]
    assert not wrong, "\n".join(wrong)


def test_the_graph_has_no_cycles() -> None:
    # Implied by the layers; checked on its own so a wrong LAYERS table cannot hide one.
    graph = {s: {t for t in ts if t not in WEB} for s, ts in _graph().items()}
    done: set[str] = set()

    def visit(unit: str, path: list[str]) -> None:
        if unit in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, unit]))
        if unit in done:
            return
        for target in graph.get(unit, set()):
            visit(target, [*path, unit])
        done.add(unit)

    for unit in graph:
        visit(unit, [])


def test_the_checker_sees_late_and_relative_imports() -> None:
    # The test must be able to fail: imports under TYPE_CHECKING, inside a function and
    # relative ones are all found, and each maps to its unit.
    text = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from llamafarm.chat import service\n"
        "def f() -> None:\n    from ..api import app\n"
        "from .. import tasks\n"
        "from llamafarm import __version__\n"
    )
    found = {_unit(m) for m in _imports(["llamafarm", "rag"], text) if m.startswith("llamafarm")}
    assert found == {"chat", "api", "tasks", "llamafarm"}
