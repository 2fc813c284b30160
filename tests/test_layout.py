"""The package layout's rules, read off the source.

* a module's name never equals a function or class it defines (``import lrjax.x as m``
  must give the module, not a function of the same name);
* no import cycle between lrjax's modules, counting the imports made inside functions
  (a deferred import hides a cycle, it does not remove it);
* a module imports another package's private names (``_x``) only from the engine,
  ``lrjax._engine``: each capability (``schedules``, ``finder``, ...) keeps its privates;
* every name of the public contract (the names tests outside the project use) imports from ``lrjax``, and from its home
  subpackage;
* each subpackage's ``__all__`` lists names it really exports.
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

import lrjax

PACKAGE = pathlib.Path(lrjax.__file__).parent
ENGINE = "lrjax._engine"


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def _resolve(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = name.split(".")
    if not MODULES[name].name == "__init__.py":
        base = base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str) -> list[tuple[str, list[str], bool]]:
    """``(module, [imported names], deferred)`` of every lrjax import of a module.

    ``deferred``: made inside a function (run when called, not when the module loads).
    """
    found = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend((alias.name, [], deferred) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((_resolve(name, child), [a.name for a in child.names], deferred))
            visit(child, deferred or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(_tree(name), False)
    return [item for item in found if item[0].split(".")[0] == "lrjax"]


def _package_of(module: str) -> str:
    """The capability a module belongs to: ``lrjax.finder.suggest.rules`` -> ``lrjax.finder``."""
    return ".".join(module.split(".")[:2])


def _edges(name: str) -> set[str]:
    """The lrjax modules that ``name`` imports, at load time or when its functions run.

    A deferred import of a package that contains ``name`` (``import lrjax`` inside a CLI
    function, to look a public name up) is left out: the package is loaded by then.
    """
    out = set()
    for module, names, deferred in _imports(name):
        for imported in names or [None]:
            full = f"{module}.{imported}" if imported else module
            target = full if full in MODULES else module
            if target not in MODULES or target == name:
                continue
            if deferred and name.startswith(target + "."):
                continue
            out.add(target)
    return out


def test_no_module_is_named_like_a_function_it_defines():
    clashes = []
    for name in MODULES:
        leaf = name.rsplit(".", 1)[-1]
        defined = {node.name for node in _tree(name).body
                   if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        if leaf in defined:
            clashes.append(name)
    assert not clashes, f"modules named like a function or class they define: {clashes}"


def test_no_import_cycle():
    graph = {name: _edges(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_private_names_cross_packages_only_from_the_engine():
    offences = []
    for name in MODULES:
        here = _package_of(name)
        for module, names, _ in _imports(name):
            there = _package_of(module)
            if there == here or module.startswith(ENGINE) or module == "lrjax":
                continue
            private = [n for n in names if n.startswith("_")]
            private_module = [p for p in module.split(".")[1:] if p.startswith("_")]
            if private or private_module:
                offences.append(f"{name} imports {private or private_module} from {module}")
    assert not offences, "\n".join(offences)


# The public contract: the name, and its home subpackage.
CONTRACT = {
    "lrjax.schedules": [
        "constant", "step_decay", "multistep_decay", "exponential_decay", "inverse_time_decay",
        "polynomial_decay", "cosine_annealing", "sgdr", "cyclic", "cyclic_momentum",
        "one_cycle", "one_cycle_momentum", "noam", "warmup", "wsd", "inverse_sqrt",
    ],
    "lrjax.optim": [
        "adamw", "sgdw", "normalized_weight_decay", "adamwr", "sgdwr", "amsgrad", "powersign",
        "addsign", "linear_sign_decay", "cosine_sign_decay", "restart_sign_decay",
    ],
    "lrjax.finder": ["range_test", "RangeTestResult"],
    "lrjax.tuning": [
        "search", "uniform", "log_uniform", "choice", "make_train_fn", "SearchResult",
        "successive_halving", "hyperband",
    ],
    "lrjax.ensembles": [
        "snapshot_schedule", "train_snapshots", "ensemble_predict", "swa", "swa_params",
    ],
    "lrjax.batch": [
        "noise_scale", "scale_learning_rate", "scale_adam", "batch_size_schedule",
        "gradient_noise_scale",
    ],
}


@pytest.mark.parametrize("home", sorted(CONTRACT))
def test_contract_names_import_from_lrjax_and_their_home(home):
    package = importlib.import_module(home)
    for name in CONTRACT[home]:
        assert getattr(lrjax, name) is getattr(package, name), (home, name)
        assert name in lrjax.__all__ and name in package.__all__, (home, name)
    assert callable(lrjax.clear_caches)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if MODULES[n].name == "__init__.py"))
def test_every_package_exports_what_its_all_lists(name):
    package = importlib.import_module(name)
    for exported in getattr(package, "__all__", []):
        assert hasattr(package, exported), (name, exported)


def test_every_module_imports():
    for name in MODULES:
        if name != "lrjax.__main__":
            importlib.import_module(name)
