"""The folder tree is the architecture: the import graph of the sources checked against the parts and dvc.yaml.

Read with ``ast`` (no module is executed). An import inside a function counts like one at the top: the stage runs
that code too.
"""

from __future__ import annotations

import ast
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "evaluation", "pipelines")
MAX_LINES = 400


def _module_files() -> dict[str, Path]:
    """Every first-party module name -> its file (a package is its ``__init__.py``)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            out[".".join(parts)] = path
    return out


MODULES = _module_files()


def _imports(module: str) -> set[str]:
    """First-party modules that ``module`` names in an import statement (anywhere in the file)."""
    path = MODULES[module]
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES and "." in name:
                name = name.rsplit(".", 1)[0]
            if name in MODULES and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(root: str) -> set[str]:
    """Every first-party module executed when ``root`` runs: its imports, theirs, and each one's parent packages."""
    seen, todo = set(), [root]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        todo.extend(GRAPH[m])
        todo.extend(p for p in _parents(m) if p in MODULES)
    return seen


def _stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _stage_module(stage: dict) -> str:
    argv = shlex.split(stage["cmd"])
    assert argv[:2] == ["python", "-m"], f"stage cmd should be `python -m pipelines.<stage>`: {stage['cmd']}"
    return argv[2]


def _code_deps(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.split("/")[0] in PACKAGES]


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


def test_top_level_package_inits_hold_only_a_docstring():
    """They run on every import but are no stage's dep, so they must not hold code."""
    for pkg in PACKAGES:
        body = ast.parse((ROOT / pkg / "__init__.py").read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), pkg


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_deps_cover_every_module_it_runs(name):
    stage = _stages()[name]
    deps = _code_deps(stage)
    runs = closure(_stage_module(stage)) - set(PACKAGES)
    missing = sorted(str(MODULES[m].relative_to(ROOT)) for m in runs if not _covered(MODULES[m], deps))
    assert not missing, f"dvc.yaml stage '{name}' runs code that is not among its deps: {missing}"


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_code_deps_are_all_used(name):
    """A folder dep that the stage never imports from makes it rerun for nothing."""
    stage = _stages()[name]
    runs = [MODULES[m] for m in closure(_stage_module(stage))]
    unused = [d for d in _code_deps(stage) if not any(_covered(p, [d]) for p in runs)]
    assert not unused, f"dvc.yaml stage '{name}' lists code deps it never imports: {unused}"


@pytest.mark.parametrize("name", sorted(_stages()))
def test_stage_code_deps_are_whole_parts(name):
    """Deps by part (a folder of ``model/`` or ``evaluation/``, or ``pipelines/common``) plus the stage's own module:
    a single library file as a dep means the part holds code the stage does not run, which then reruns nothing
    when it should (or the part is cut wrong)."""
    stage = _stages()[name]
    own = MODULES[_stage_module(stage)].relative_to(ROOT).as_posix()
    parts = {"pipelines/common"} | {
        p.parent.relative_to(ROOT).as_posix()
        for pkg in ("model", "evaluation")
        for p in (ROOT / pkg).glob("*/__init__.py")
    }
    odd = [d for d in _code_deps(stage) if d != own and d.rstrip("/") not in parts]
    assert not odd, f"dvc.yaml stage '{name}': code deps should be whole parts, not {odd}"


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n) :] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


ALLOWED = {
    # part -> first-party parts it may import (besides itself); see each part's __init__ docstring
    "model.runtime": set(),
    "model.audio": {"model.runtime"},
    "model.network": set(),
    "model.text": set(),
    "model.datasets": {"model.audio", "model.runtime"},
    "model.data": {"model.runtime"},
    "model.separation": {"model.audio", "model.runtime"},
    "model.codec": {"model.audio", "model.data", "model.runtime"},
    "model.flow": {
        "model.network",
        "model.data",
        "model.codec",
        "model.text",
        "model.audio",
        "model.runtime",
    },
    "model.training": {"model.network", "model.flow", "model.text", "model.data", "model.runtime"},
    "evaluation.challenge": {"model.audio", "model.runtime"},
    "evaluation.metrics": {"evaluation.challenge", "model.audio", "model.text", "model.runtime"},
    "evaluation.scoring": {
        "evaluation.challenge",
        "evaluation.metrics",
        "model.audio",
        "model.text",
        "model.runtime",
    },
    "evaluation.report": {"model.audio", "model.runtime"},
}


def _part(module: str) -> str | None:
    for part in sorted(ALLOWED, key=len, reverse=True):
        if module == part or module.startswith(part + "."):
            return part
    return None


def test_every_library_module_belongs_to_a_part():
    strays = [
        m
        for m in MODULES
        if m.split(".")[0] != "pipelines" and m not in ("model", "evaluation") and _part(m) is None
    ]
    assert not strays


@pytest.mark.parametrize("part", sorted(ALLOWED))
def test_part_imports_only_what_its_docstring_allows(part):
    bad = sorted(
        f"{m} -> {n}"
        for m in MODULES
        if _part(m) == part
        for n in GRAPH[m]
        if _part(n) not in ALLOWED[part] | {part}
    )
    assert not bad, f"{part} imports outside what it may: {bad}"


def test_network_imports_nothing_from_training_data_or_evaluation():
    for m in MODULES:
        if m.startswith("model.network"):
            assert all(n.startswith("model.network") for n in GRAPH[m]), (m, GRAPH[m])


def test_library_never_imports_pipelines():
    bad = [
        (m, n)
        for m in MODULES
        if not m.startswith("pipelines")
        for n in GRAPH[m]
        if n.startswith("pipelines")
    ]
    assert not bad


def test_model_has_no_loose_modules_and_no_file_is_huge():
    loose = [p.name for p in (ROOT / "model").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"model/ should hold only parts (folders): {loose}"
    for pkg in (*PACKAGES, "tests", "bench"):
        for path in (ROOT / pkg).rglob("*.py"):
            n = len(path.read_text().splitlines())
            assert n <= MAX_LINES, f"{path.relative_to(ROOT)}: {n} lines (split it by concern)"


def test_every_part_says_what_it_is():
    for path in [*(ROOT / "model").glob("*/__init__.py"), *(ROOT / "evaluation").glob("*/__init__.py")]:
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc) > 40, (
            f"{path.relative_to(ROOT)}: say what the part is, what it may import, who uses it"
        )
