"""The public API is what ``__all__`` says, and layers import downward only."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import burstlab

SRC = Path(burstlab.__file__).parent
#: DESIGN.md "Layers", bottom first: a module may import its own layer and those below.
LAYERS = (
    "core",
    "trace",
    "results",
    "analyze",
    "workload",
    "sim",
    "server",
    "bench",
    "forecast",
    "report",
    "cli",
)


def _type_checking_names() -> dict[str, str]:
    """``name -> module`` for every import under ``if TYPE_CHECKING:`` in ``burstlab/__init__``."""
    tree = ast.parse((SRC / "__init__.py").read_text())
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom)
                for alias in stmt.names:
                    out[alias.asname or alias.name] = f"{stmt.module}:{alias.name}"
    return out


def test_all_the_lazy_map_and_the_type_checking_imports_agree() -> None:
    eager = {"BurstlabError", "FetchError", "InputError", "__version__"}
    lazy = set(burstlab._LAZY)
    checking = _type_checking_names()
    assert set(burstlab.__all__) == lazy | eager
    assert set(checking) == lazy
    for name, where in burstlab._LAZY.items():
        module, _, attr = where.partition(":")
        assert checking[name] == f"{module}:{attr or name}", name
    assert len(burstlab.__all__) == len(set(burstlab.__all__))


def test_every_exported_name_resolves_and_is_documented() -> None:
    for name in burstlab.__all__:
        value = getattr(burstlab, name)
        if callable(value) and not name.isupper():
            assert value.__doc__, f"burstlab.{name} has no docstring"
    assert "no_such_name" not in dir(burstlab)


def test_layers_import_downward_only() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).parts
        if len(parts) < 2:
            continue  # burstlab/__init__.py re-exports every layer, lazily
        own = rank[parts[0]]
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                bits = [*name.split("."), ""]
                if bits[0] == "burstlab" and rank.get(bits[1], -1) > own:
                    upward.append(f"{path.relative_to(SRC)} imports {name}")
    assert not upward, "\n".join(upward)


def test_every_module_imports() -> None:
    for path in sorted(SRC.rglob("*.py")):
        module = ".".join(("burstlab", *path.relative_to(SRC).with_suffix("").parts))
        importlib.import_module(module.removesuffix(".__init__"))
