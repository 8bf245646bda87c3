"""The package's layering, read from the source: imports point down (cli → methods → engine) and never loop.

Every import counts, including those inside functions, so a cycle cannot hide behind a late import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "softscope"
# what each layer may import; the package root (layer "") re-exports the engine's API
ALLOWED = {"records": {"records"},  # the declared record types: the bottom layer, imports nothing else
           "engine": {"records", "engine"}, "methods": {"records", "engine", "methods"},
           "report": {"records", "engine", "report"},
           "serve": {"records", "engine", "methods", "report", "serve"},  # the live explorer: beside cli
           "cli": {"records", "engine", "methods", "report", "serve", "cli"},
           "": {"records", "engine", "methods", "report", "serve", "cli", ""}}


def module_name(path: Path, root: Path = PKG) -> str:
    parts = ("softscope",) + path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, root: Path = PKG) -> set[str]:
    """Every softscope module `path` imports (at the top or inside a function), by absolute name."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "softscope"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "softscope":
                continue
            for a in node.names:  # `from . import core` imports the module softscope.cli.core
                sub = f"{target}.{a.name}"
                as_path = root.parent / Path(*sub.split("."))
                out.add(sub if as_path.with_suffix(".py").exists() or (as_path / "__init__.py").exists() else target)
    out.discard(name)
    return out


def graph(root: Path = PKG) -> dict[str, set[str]]:
    return {module_name(p, root): imports_of(p, root) for p in sorted(root.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in ALLOWED else ""


def upward_imports(g: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs that break the layering: engine → methods/report/cli, methods → report/cli, ..."""
    return sorted((m, t) for m, ts in g.items() for t in ts if layer(t) not in ALLOWED[layer(m)])


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None. Package __init__ edges to their own
    submodules are the package's re-exports, not a dependency of the submodule on its package."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(g.get(m, ())):
            if t not in g or (t.startswith(m + ".") and t != m):
                continue
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in g:
        if m not in state and (c := visit(m)):
            return c
    return None


def test_the_package_has_the_three_layers_and_nothing_loose():
    assert {p.name for p in PKG.iterdir() if p.is_dir() and p.name != "__pycache__"} >= {"engine", "methods", "cli",
                                                                                          "report"}
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside the layers: {loose}"


def test_no_upward_imports():
    assert upward_imports(graph()) == []


def test_no_import_cycles():
    assert find_cycle(graph()) is None


def test_the_checks_catch_a_cycle_and_an_upward_import(tmp_path):
    """The walker itself: a function-level import that closes a loop, and an engine module importing a method."""
    pkg = tmp_path / "softscope"
    for d in ("engine", "methods", "cli", "report"):
        (pkg / d).mkdir(parents=True)
        (pkg / d / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "engine" / "a.py").write_text("from .b import x\n")
    (pkg / "engine" / "b.py").write_text("def f():\n    from .a import y\n")
    (pkg / "engine" / "c.py").write_text("from ..methods import m\n")
    (pkg / "methods" / "m.py").write_text("import softscope.engine.a\n")
    g = graph(pkg)
    assert find_cycle(g) in (["softscope.engine.a", "softscope.engine.b", "softscope.engine.a"],
                             ["softscope.engine.b", "softscope.engine.a", "softscope.engine.b"])
    assert upward_imports(g) == [("softscope.engine.c", "softscope.methods.m")]


@pytest.mark.parametrize("module", ["engine", "methods"])
def test_lower_layers_import_no_cli_library(module):
    """click belongs to the CLI: engines and methods are used from Python without it."""
    for p in sorted((PKG / module).rglob("*.py")):
        names = {a.name.split(".")[0] for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
                 if isinstance(n, (ast.Import, ast.ImportFrom)) for a in (n.names if isinstance(n, ast.Import)
                                                                          else [ast.alias(n.module or "")])}
        assert "click" not in names, p


# ---- one declaration per option: configs compose the shared groups instead of re-declaring their fields -------------
def test_no_config_redeclares_a_shared_option_group_field():
    import dataclasses
    import inspect

    from softscope.engine import config as groups
    from softscope.engine.executor import ExecutorOptions

    shared = [c for _, c in inspect.getmembers(groups, inspect.isclass)
              if c.__module__ == groups.__name__ and c.__name__.endswith("Options")] + [ExecutorOptions]
    owned = {f.name for g in shared for f in dataclasses.fields(g)}
    clashes = {}
    for name in ("describe", "interpret", "explain", "wayward", "pez", "rlprompt", "tradeoff", "bias"):
        mod = __import__(f"softscope.methods.{name}", fromlist=["x"])
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if (dataclasses.is_dataclass(cls) and cls.__module__.startswith(mod.__name__)  # a package: its modules
                    and cls.__name__.endswith("Config")):
                own = set(cls.__dict__.get("__annotations__", {})) & owned
                if own:
                    clashes[cls.__name__] = sorted(own)
    # deliberate: the paper's template is wayward's default; RLPrompt and bias make-data own a training-side setting
    # of the same name (not a reading option), as TrainConfig does
    assert clashes == {"WaywardConfig": ["template"], "RLPromptConfig": ["max_length"], "MakeDataConfig": ["max_train"]}


def test_describe_composes_the_model_and_task_reading_groups():
    from softscope.engine.config import PromptModelOptions, ReadOptions, TaskReadOptions
    from softscope.methods.describe import DescribeConfig

    assert issubclass(DescribeConfig, PromptModelOptions) and issubclass(DescribeConfig, TaskReadOptions)
    assert issubclass(ReadOptions, TaskReadOptions) and not issubclass(DescribeConfig, ReadOptions)
    cfg = DescribeConfig(task="sst2", max_length=64, trust_remote_code=True)
    assert cfg.given() == {"task": "sst2", "max_length": 64} and cfg.trust_remote_code is True


def test_given_reports_each_groups_own_fields():
    """given() lists the set reading options of the config's own group: ReadOptions adds verbalizer and max_test,
    a config composing only TaskReadOptions never reports them (or its other groups' fields)."""
    from softscope.engine.config import ReadOptions, TaskReadOptions
    from softscope.methods.describe import DescribeConfig

    r = ReadOptions(task="sst2", verbalizer="full", max_test=10, allow_other_task=True)
    assert r.given() == {"task": "sst2", "verbalizer": "full", "max_test": 10}
    assert TaskReadOptions(max_length=32).given() == {"max_length": 32}
    assert {f.name for f in DescribeConfig.read_fields()} == {f.name for f in TaskReadOptions.read_fields()}


# ---- size, run kinds (issue #28) -----------------------------------------------------------------------
MAX_LINES = 350


def test_no_module_over_the_size_limit_without_its_reason():
    """A module over MAX_LINES says why at its top (a `# size:` line right after its docstring)."""
    long = []
    for path in sorted(PKG.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and "\n# size: " not in text[:4000]:
            long.append(f"{path.relative_to(PKG)} ({text.count(chr(10))} lines)")
    assert not long, "modules over %d lines with no '# size:' reason: %s" % (MAX_LINES, ", ".join(long))


def _run_open_kinds(path: Path) -> list[str]:
    """String literals passed as the kind of Run.open(path, kind, ...) in a module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "open"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "Run" and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)):
            out.append(node.args[1].value)
    return out


def test_run_kinds_register_themselves_and_the_engine_names_none():
    """Every kind is declared by the module that writes it (`register_kind`); the run mechanism lists none, and the
    engine registers only the training engine's own kind; no module opens a run with a literal kind."""
    import softscope.cli  # noqa: F401  (imports every command, so every kind is registered)
    from softscope.engine import runs

    registered_in = {}
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "register_kind"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                registered_in[node.args[0].value] = str(path.relative_to(PKG))
        assert _run_open_kinds(path) == [], f"{path.relative_to(PKG)} opens a run with a literal kind"
    assert set(registered_in) == set(runs.KINDS)
    engine = {k: where for k, where in registered_in.items() if where.startswith("engine/")}
    assert engine == {"train": "engine/training.py"}  # runs.py, the mechanism, names no kind


def test_an_old_folder_is_recognised_from_what_the_kinds_registered(tmp_path):
    import json

    import softscope.cli  # noqa: F401
    from softscope.engine.runs import _legacy_kind

    cases = {"a": ({"state.safetensors": ""}, "train"), "b": ({"config.json": {"command": "bias make-data --x"}}, "bias-data"),
             "c": ({"config.json": {"command": "bias run --x"}}, "bias"), "d": ({"adapter_config.json": {}}, "export"),
             "e": ({"config.json": {"command": "wayward-compare a b"}}, "wayward-compare"),
             "f": ({"config.json": {"command": "nothing known"}}, None)}
    for name, (files, kind) in cases.items():
        d = tmp_path / name
        d.mkdir()
        for f, content in files.items():
            (d / f).write_text(content if isinstance(content, str) else json.dumps(content))
        assert _legacy_kind(d) == kind, name


# ---- one meaning per name (issue #28) ---------------------------------------------------------------------
# module-level names several modules define on purpose: each means the same thing in every module that has it
SHARED_NAMES = {
    "KIND": "this module's run kind, from runs.register_kind",
    "COMMANDS": "this CLI module's commands, collected by cli/__init__",
    "GROWABLE": "the config fields a resumed run of this module's kind may change",
    "PROTOCOLS": "this method's --protocol choices",
    "main": "an entry point",
}
PENDING: dict[str, str] = {}  # a clash being renamed on one side, with where it is (empty: none)


def module_level_names(path: Path) -> set[str]:
    """Functions, classes and variables a module defines at its top level (also under a top-level if/try),
    dunder names aside; imported names are not definitions."""
    out, todo = set(), list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                out |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.If, ast.Try)):
            todo += node.body + node.orelse + getattr(node, "finalbody", []) + \
                [s for h in getattr(node, "handlers", []) for s in h.body]
    return {n for n in out if not (n.startswith("__") and n.endswith("__"))}


def same_names(root: Path = PKG) -> dict[str, list[str]]:
    """{name: the modules defining it} for every module-level name two or more modules define."""
    where: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*.py")):
        for name in module_level_names(path):
            where.setdefault(name, []).append(str(path.relative_to(root)))
    return {n: ms for n, ms in sorted(where.items()) if len(ms) > 1}


def test_no_two_modules_define_the_same_name():
    """One meaning per name: two modules defining the same top-level name (public or private) must mean the same
    thing (SHARED_NAMES) or reuse one definition; a clash not listed fails."""
    clashes = {n: ms for n, ms in same_names().items() if n not in SHARED_NAMES and n not in PENDING}
    assert not clashes, "same module-level name in several modules (rename one, or import it): %s" % clashes


def test_the_name_check_catches_a_clash(tmp_path):
    pkg = tmp_path / "softscope"
    (pkg / "a").mkdir(parents=True)
    (pkg / "a" / "x.py").write_text("def plot():\n    pass\nKIND = 'x'\n__all__ = []\n")
    (pkg / "a" / "y.py").write_text("from .x import plot as p\nif True:\n    plot = 1\nKIND = 'y'\n__all__ = []\n")
    (pkg / "a" / "z.py").write_text("import os\ndef _helper(): pass\nclass C:\n    def plot(self): pass\n")
    assert same_names(pkg) == {"KIND": ["a/x.py", "a/y.py"], "plot": ["a/x.py", "a/y.py"]}


def test_every_record_type_has_its_schema_in_the_docs():
    """docs/schemas/<Type>.json is the current schema of every declared record, and records.md has its section."""
    import json

    from softscope.records import all_records, json_schema

    ROOT = PKG.parents[1]
    for t in all_records():
        p = ROOT / "docs" / "schemas" / f"{t.__name__}.json"
        assert p.is_file() and json.loads(p.read_text()) == json_schema(t), t.__name__
        assert f"## {t.__name__}\n" in (ROOT / "docs" / "records.md").read_text()
