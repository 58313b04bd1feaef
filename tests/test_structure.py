"""The shape of the code (issues 15 and 34): the store is the only place that speaks SQL,
the modules of relay import each other without a cycle, type-checking imports included,
each package imports exactly what the table below allows (docs/architecture.md shows the
same table), and the light modules stay light to import.

Each check is a function over the source that returns what breaks the rule; the tests at
the end feed them a broken module, so a check that stopped finding anything would fail."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "relay"
SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|PRAGMA|BEGIN|COMMIT|ROLLBACK|CREATE|DROP|ALTER|VACUUM"
    r"|LISTEN|NOTIFY)\b"
)
DOC = ROOT / "docs" / "architecture.md"

# Which of relay's packages (and top-level modules) each one imports, run time and type
# checking alike: exactly these. A change of imports changes this table and the one in
# docs/architecture.md, on purpose.
ALLOWED: dict[str, set[str]] = {
    "__main__": {"cli"},
    "acceptor": {"log"},
    "acme": {"errors"},
    "admin": {
        "alerting",
        "catchup",
        "configtypes",
        "delivery",
        "errors",
        "filters",
        "incidents",
        "log",
        "network",
        "people",
        "records",
        "rows",
        "sections",
        "store",
        "text",
        "verify",
    },
    "agent": {"configtypes", "delivery", "errors", "log", "sections", "systemd"},
    "agentframes": set(),
    "agents": {"agentframes", "delivery", "log", "metrics", "network", "records", "sections"},
    "alerting": {"errors", "ids", "incidents", "records", "sections", "text"},
    "app": {
        "admin",
        "agents",
        "alerting",
        "catchup",
        "certificates",
        "clock",
        "config",
        "control",
        "errors",
        "ingress",
        "listener",
        "metrics",
        "people",
        "records",
        "retention",
        "scheduler",
        "sections",
        "sockets",
        "store",
        "systemd",
    },
    "catchup": {"config", "configtypes", "errors", "ingress", "metrics", "records", "store"},
    "certificates": {"acme", "clienthello", "errors", "sections", "tls"},
    "circuit": set(),
    "clienthello": set(),
    "cli": {
        "agent",
        "app",
        "config",
        "configtypes",
        "errors",
        "filters",
        "log",
        "people",
        "records",
        "sections",
        "sink",
        "storagecheck",
        "store",
        "text",
    },
    "clock": set(),
    "config": {"configtypes", "errors", "normalize", "pgdriver", "route", "sections", "verify"},
    "configtypes": set(),
    "control": {
        "admin",
        "agents",
        "catchup",
        "config",
        "configtypes",
        "errors",
        "extract",
        "metrics",
        "records",
        "retention",
        "route",
        "scheduler",
        "sections",
        "store",
    },
    "delivery": {"normalize", "records", "sections", "verify"},
    "encoding": set(),
    "errors": set(),
    "extract": set(),
    "filters": {"records"},
    "ids": set(),
    "incidents": {"rows"},
    "ingress": {
        "agents",
        "config",
        "configtypes",
        "encoding",
        "errors",
        "extract",
        "ids",
        "instants",
        "metrics",
        "network",
        "normalize",
        "ratelimit",
        "records",
        "route",
        "store",
        "verify",
    },
    "instants": set(),
    "launcher": set(),
    "listener": {"acceptor", "clienthello", "configtypes", "memory", "network"},
    "log": set(),
    "memory": set(),
    "metrics": {"records"},
    "network": {"configtypes"},
    "normalize": {"configtypes", "extract", "instants", "records"},
    "people": set(),
    "pgdriver": {"errors"},
    "ratelimit": set(),
    "records": {"configtypes", "errors", "instants"},
    "retention": {"errors", "sections", "store"},
    "retry": {"sections"},
    "route": {"configtypes", "extract"},
    "rows": set(),
    "scheduler": {
        "agents",
        "alerting",
        "circuit",
        "clock",
        "delivery",
        "errors",
        "log",
        "metrics",
        "ratelimit",
        "records",
        "retry",
        "sections",
        "store",
    },
    "sections": {"configtypes", "people", "tls"},
    "sink": {"sections"},
    "sockets": {"launcher"},
    "sql": set(),
    "storagecheck": {"records", "store"},
    "store": {
        "configtypes",
        "errors",
        "ids",
        "log",
        "normalize",
        "pgdriver",
        "records",
        "rows",
        "sections",
        "sql",
        "verify",
    },
    "systemd": set(),
    "text": set(),
    "tls": set(),
    "verify": {"configtypes", "instants"},
}

# Modules that must stay cheap to import: no store, no verifier (a fresh interpreter each).
LIGHT = ["relay.scheduler.plan", "relay.retry", "relay.circuit", "relay.agent"]


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string constant, docstrings excepted (they may talk about SQL)."""
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def sources() -> dict[Path, str]:
    """relay's modules: path and text."""
    return {path: path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def sql_outside_the_store(files: dict[Path, str]) -> list[str]:
    found = []
    for path, text in files.items():
        if path.is_relative_to(PACKAGE / "store"):
            continue
        for line, value in _strings(ast.parse(text)):
            if SQL.search(value):
                found.append(f"{path.relative_to(ROOT)}:{line}: {value[:60]!r}")
    return found


def test_no_sql_outside_the_store() -> None:
    assert sql_outside_the_store(sources()) == []


def test_no_file_wide_lint_exception_for_sql() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    ignores = config["tool"]["ruff"]["lint"].get("per-file-ignores", {})
    assert [f for f, codes in ignores.items() if "S608" in codes and f.startswith("relay")] == []


def _imports(path: Path, module: str, text: str | None = None) -> set[str]:
    """The relay modules ``path`` imports, at run time or under TYPE_CHECKING alike."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(text if text is not None else path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
    return {name for name in found if name == "relay" or name.startswith("relay.")}


def _package(module: str) -> str:
    """The table's unit: relay's top-level module or package a module belongs to."""
    return module.split(".")[1] if "." in module else module


def package_graph(files: dict[Path, str]) -> dict[str, set[str]]:
    """Which units each unit imports (``relay`` itself, for its version, left out)."""
    modules = {_module(path): path for path in files}
    units = {_package(m) for m in modules if m != "relay"}
    graph: dict[str, set[str]] = {u: set() for u in units}
    for name, path in modules.items():
        if name == "relay":
            continue
        for imported in _imports(path, name, files[path]):
            target = _package(imported)
            if imported != "relay" and target != _package(name) and target in units:
                graph[_package(name)].add(target)
    return graph


def table_breaks(graph: dict[str, set[str]], table: dict[str, set[str]]) -> list[str]:
    """Imports the table does not allow, and allowances nothing uses (the table must say
    what is, so that docs/architecture.md does)."""
    breaks = []
    for unit in sorted(set(graph) | set(table)):
        actual, allowed = graph.get(unit, set()), table.get(unit)
        if allowed is None:
            breaks.append(f"{unit}: not in the table")
            continue
        breaks += [
            f"{unit} imports {t}, which the table does not allow" for t in sorted(actual - allowed)
        ]
        breaks += [
            f"{unit} no longer imports {t}: take it out of the table"
            for t in sorted(allowed - actual)
        ]
    return breaks


def package_cycles(graph: dict[str, set[str]]) -> list[str]:
    cycles: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, set())):
            if state.get(target) == 1:
                cycles.append(" -> ".join([*stack[stack.index(target) :], target]))
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_each_package_imports_what_the_table_allows() -> None:
    assert table_breaks(package_graph(sources()), ALLOWED) == []


def test_no_cycle_between_packages() -> None:
    assert package_cycles(ALLOWED) == []


def test_the_architecture_doc_shows_the_table() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \|$", DOC.read_text(), re.M)
    documented = {unit: set(re.findall(r"`(\w+)`", allowed)) for unit, allowed in rows}
    assert documented == ALLOWED


def test_only_the_store_loads_relay_sql() -> None:
    assert "sql" not in {t for unit, targets in ALLOWED.items() if unit != "store" for t in targets}


def test_no_import_cycle_in_relay() -> None:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in _imports(path, name) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its own modules is not a cycle of concerns: an
    # edge from a package to one of its submodules is left out.
    for name, targets in graph.items():
        graph[name] = {t for t in targets if not t.startswith(name + ".")}
    assert package_cycles(graph) == []


def test_admin_never_imports_the_app() -> None:
    for path in (PACKAGE / "admin").rglob("*.py"):
        imported = _imports(path, _module(path))
        assert not imported & {"relay.app", "relay.control", "relay.scheduler"}, path


@pytest.mark.parametrize("module", LIGHT)
def test_light_modules_load_no_store_and_no_verifier(module: str) -> None:
    """A fresh interpreter per module (as aiohttp tests its imports): what importing it
    loads of relay."""
    script = (
        f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('relay.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = done.stdout.split()
    assert [m for m in loaded if m == "relay.store" or m.startswith("relay.store.")] == []
    verifiers = [m for m in loaded if m.startswith("relay.verify.") and m != "relay.verify.base"]
    assert verifiers == []


# -- the checks find what they are for ------------------------------------------------------


def test_the_sql_check_finds_a_begin_outside_the_store() -> None:
    files = sources()
    files[PACKAGE / "storagecheck.py"] += '\n\ndef sneak(db):\n    db.execute("BEGIN")\n'
    found = sql_outside_the_store(files)
    assert len(found) == 1
    assert "BEGIN" in found[0]


def test_the_table_check_finds_an_import_it_does_not_allow() -> None:
    files = sources()
    files[PACKAGE / "retry.py"] = "from relay.store import Store\n" + files[PACKAGE / "retry.py"]
    breaks = table_breaks(package_graph(files), ALLOWED)
    assert breaks == ["retry imports store, which the table does not allow"]


def test_the_cycle_check_finds_a_package_cycle() -> None:
    graph = {unit: set(targets) for unit, targets in ALLOWED.items()}
    graph["records"].add("store")  # store imports records: a cycle
    assert "records -> store -> records" in package_cycles(graph)


BACKENDS = (PACKAGE / "store" / "sqlite", PACKAGE / "store" / "postgresql")
# A database's name compared (a URL's scheme in the config is not a backend's name).
BACKEND_NAME = re.compile(
    r"""\b(\w+\.)?(name|backend|dialect)\s*(==|!=)\s*["'](sqlite|postgresql)["']"""
)


def backend_branches(files: dict[Path, str]) -> list[str]:
    """Code that asks which database it runs on, outside the backends: what differs
    belongs in a backend, or in a value the backend hands over (clauses.Dialect,
    verbs.Manners)."""
    found = []
    for path, text in files.items():
        if any(path.is_relative_to(backend) for backend in BACKENDS):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if BACKEND_NAME.search(line.split("#", 1)[0]):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    return found


def test_no_backend_name_branches_outside_the_backends() -> None:
    assert backend_branches(sources()) == []


def test_the_backend_check_finds_a_branch_on_the_name() -> None:
    files = sources()
    files[PACKAGE / "store" / "reader.py"] += '\n\nif dialect.name == "sqlite":\n    pass\n'
    found = backend_branches(files)
    assert len(found) == 1
    assert "reader.py" in found[0]


MAX_MODULE_LINES = 550
MAX_FUNCTION_LINES = 80
# Functions that only declare (one statement per metric, no logic): long by nature.
DECLARATIONS = {("relay/metrics.py", "__init__")}


def oversized(files: dict[Path, str]) -> list[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES."""
    found = []
    for path, text in files.items():
        name = str(path.relative_to(ROOT))
        lines = text.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES and (name, node.name) not in DECLARATIONS:
                    found.append(f"{name}:{node.lineno}: {node.name} is {length} lines")
    return found


def test_no_module_or_function_is_too_long() -> None:
    assert oversized(sources()) == []


def test_the_size_check_finds_a_long_function() -> None:
    files = sources()
    body = "".join(f"    x{i} = {i}\n" for i in range(90))
    files[PACKAGE / "retry.py"] += f"\n\ndef sprawling() -> None:\n{body}"
    found = oversized(files)
    assert len(found) == 1
    assert "sprawling is 91 lines" in found[0]
