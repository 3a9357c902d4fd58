"""The layout the README's Architecture section promises, checked on the source (issue 12's targets):
no model-family branch outside `jaxmoe/families`, no import cycle among jaxmoe's and experiments' modules,
no private name imported across modules, `fit_curve` and `run_sweep` short, and no function past a ceiling."""

import ast
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAMILY_PACKAGE = os.path.join("jaxmoe", "families")
FAMILY_TYPES = r"(SoftmaxMoE|DenseToSparseMoE|HierarchicalMoE|SigmoidGatingMoE|SoftmaxParams|DenseToSparseParams|" \
               r"HierarchicalParams|SigmoidParams)"
FAMILY_BRANCHES = [
    re.compile(r"isinstance\([^)]*\b" + FAMILY_TYPES + r"\b"),  # isinstance(model, SoftmaxMoE), ...
    re.compile(r"""family\W{0,3}\s*(==|!=)\s*["']"""),  # family == "hierarchical", m["family"] != "softmax"
    re.compile(r"""family\W{0,3}\s+(not\s+)?in\s+[(\[{]\s*["']"""),  # family in ("softmax", ...)
    re.compile(r"""hasattr\([^)]*["']k2["']\)"""),  # hasattr(model, "k2")
    re.compile(r"""router["']?\)?\s*==\s*["']linear["']"""),  # m.get("router") == "linear"
]
# Longest function allowed anywhere (lines, docstring included), and the two entry points' own limit.
MAX_FUNCTION_LINES = 80
ENTRY_POINTS = {("jaxmoe/estimation/curve.py", "fit_curve"): 60, ("jaxmoe/sweeps/runner.py", "run_sweep"): 60}


def _sources(*folders):
    for folder in folders:
        for base, _, files in os.walk(os.path.join(ROOT, folder)):
            for name in sorted(files):
                if name.endswith(".py"):
                    path = os.path.join(base, name)
                    yield os.path.relpath(path, ROOT), open(path).read()


def _module_name(rel: str) -> str:
    parts = rel[:-3].split(os.sep)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def family_branches(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines()
            if not line.strip().startswith("#") and any(p.search(line) for p in FAMILY_BRANCHES)]


def test_the_branch_patterns_catch_what_they_are_meant_to():
    bad = ['if isinstance(model, HierarchicalMoE):', 'elif m["family"] == "softmax":',
           'k = model.k2 if hasattr(model, "k2") else model.k', 'if m.get("router") == "linear":',
           'if setting.model.family == "dense_to_sparse":']
    assert [family_branches(line) for line in bad] == [[line] for line in bad]
    assert family_branches("family = get_family(name)\nrates = model.theory_rates()") == []


def test_no_family_branch_outside_the_family_package():
    found = {rel: lines for rel, text in _sources("jaxmoe") if not rel.startswith(FAMILY_PACKAGE)
             for lines in [family_branches(text)] if lines}
    assert found == {}


def _imports(tree: ast.AST, module: str, is_package: bool):
    """(imported module, names) for every import in the file, relative imports resolved."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            yield base, [a.name for a in node.names]


def _graph():
    modules = {}
    for rel, text in list(_sources("jaxmoe")) + list(_sources("experiments")):
        name = _module_name(rel)
        if rel.startswith("experiments"):
            name = name.split(".", 1)[1]  # scripts import each other by bare name (their folder is on the path)
        modules[name] = (rel, ast.parse(text))
    edges = {name: set() for name in modules}
    for name, (rel, tree) in modules.items():
        for target, names in _imports(tree, name, rel.endswith("__init__.py")):
            for full in [f"{target}.{n}" for n in names] + [target]:
                if full in modules and full != name:
                    edges[name].add(full)
                    break
    return edges


def _cycle(edges):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_jaxmoe_and_experiments_modules():
    edges = _graph()
    assert "jaxmoe.families.softmax" in edges and "jaxmoe.families.base" in edges["jaxmoe.families.softmax"]
    assert _cycle(edges) is None


def _private_imports(rel: str, tree: ast.AST) -> list[str]:
    bad = []
    module_aliases = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("jaxmoe", "_probes", "shared"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    bad.append(f"{rel}: from {node.module} import {alias.name}")
            if any(part.startswith("_") and not part.startswith("__") for part in node.module.split(".")):
                bad.append(f"{rel}: from {node.module} import ...")
        if isinstance(node, ast.ImportFrom) and node.module == "jaxmoe.estimation" or \
                isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jaxmoe"):
            module_aliases.update(a.asname or a.name for a in node.names)
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "jaxmoe":
                    module_aliases.add(alias.asname or alias.name.split(".")[0])
                if any(p.startswith("_") and not p.startswith("__") for p in alias.name.split(".")):
                    bad.append(f"{rel}: import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in module_aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            bad.append(f"{rel}: {node.value.id}.{node.attr}")
    return bad


def test_the_private_import_check_catches_private_names():
    tree = ast.parse("from jaxmoe.estimation.curve import _prepare\nfrom jaxmoe._private import require\n"
                     "from jaxmoe.estimation import curve\ncurve._default_lanes(1)\n")
    assert len(_private_imports("x.py", tree)) == 3


def test_no_private_name_imported_across_modules():
    bad = [line for rel, text in list(_sources("tests")) + list(_sources("experiments")) + list(_sources("jaxmoe"))
           for line in _private_imports(rel, ast.parse(text))]
    assert bad == []


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize("where", list(ENTRY_POINTS), ids=lambda w: w[1])
def test_the_entry_points_are_short(where):
    rel, name = where
    lengths = dict(_functions(ast.parse(open(os.path.join(ROOT, rel)).read())))
    assert lengths[name] <= ENTRY_POINTS[where]


def test_every_function_is_short_enough_to_read_at_once():
    long = {f"{rel}:{name}": lines for rel, text in _sources("jaxmoe")
            for name, lines in _functions(ast.parse(text)) if lines > MAX_FUNCTION_LINES}
    assert long == {}


def _top_level_statements(body):
    """A module's statements, with those inside a top-level `if` / `try` (optional imports) flattened in."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try)):
            handlers = [n for h in getattr(node, "handlers", []) for n in h.body]
            yield from _top_level_statements(node.body + node.orelse + getattr(node, "finalbody", []) + handlers)


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (assignments, defs, classes, imports): the ones `from M import x`
    finds without running M."""
    names: set[str] = set()
    for node in _top_level_statements(tree.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


def _local_module(module: str, importer: str) -> str | None:
    """The file of `module` when it is jaxmoe's or a sibling script of an experiments/ importer, else None."""
    parts = module.split(".")
    folder = ROOT if parts[0] == "jaxmoe" else os.path.join(ROOT, os.path.dirname(importer))
    for candidate in (os.path.join(folder, *parts) + ".py", os.path.join(folder, *parts, "__init__.py")):
        if os.path.isfile(candidate):
            return candidate
    return None


def _missing_imports(rel: str, tree: ast.AST) -> list[str]:
    missing = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.ImportFrom) and node.module and node.level == 0):
            continue
        path = _local_module(node.module, rel)
        if path is None:
            continue
        target = ast.parse(open(path).read())
        bound = _bound_names(target)
        if "__getattr__" in bound or "*" in bound:  # a module-level __getattr__ or a star import: any name
            continue
        package = os.path.dirname(path) if path.endswith("__init__.py") else None
        for alias in node.names:
            submodule = package and (os.path.isfile(os.path.join(package, alias.name + ".py"))
                                     or os.path.isdir(os.path.join(package, alias.name)))
            if alias.name not in bound and not submodule:
                missing.append(f"{rel}: from {node.module} import {alias.name}")
    return missing


def test_the_missing_import_check_finds_a_name_a_module_no_longer_defines():
    tree = ast.parse("from jaxmoe.presets import get_preset, NO_SUCH_NAME\nfrom lower_bound_profiles import ROWS, LOSSES\n")
    assert _missing_imports(os.path.join("experiments", "x.py"), tree) == [
        "experiments/x.py: from jaxmoe.presets import NO_SUCH_NAME",
        "experiments/x.py: from lower_bound_profiles import LOSSES"]


def test_every_name_the_experiments_and_tests_import_from_jaxmoe_or_a_sibling_script_exists():
    """Experiments scripts run outside CI: an import that a refactor broke would show only when someone reruns
    one (local_alternatives.py imported a LOSSES that lower_bound_profiles.py no longer had)."""
    missing = [line for rel, text in list(_sources("experiments")) + list(_sources("tests"))
               for line in _missing_imports(rel, ast.parse(text))]
    assert missing == []
