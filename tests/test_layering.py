"""Arrows that point one way. The library does not depend on the app: no command but the
full-screen `edgeai chat` imports `edgeai.tui`, and no module of the library, the catalog, the
converters or the bench does (except bench/tui.py, the benchmark of the app, on purpose). The
catalog does not depend on the runtime: `models/` never imports `edgeai.runtime` (an endpoint URL
becomes a remote spec in `runtime.loader`, not in the resolver)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder -> the import name it installs as (pyproject's package-dir)
PACKAGES = {"edgeai": "edgeai", "models": "edgeai.models", "converters": "edgeai.converters",
            "bench": "edgeai.bench"}
ALLOWED_FILES = {"bench/tui.py"}  # measures the app itself (its docstring says so)
ALLOWED_FUNCTIONS = {("edgeai/cli/chat.py", "chat")}  # the full-screen branch of `edgeai chat`

PROBE = """
import sys
from edgeai.cli import run_cli
code = run_cli(sys.argv[1:])
print("EDGEAI_TUI_IMPORTED=" + str("edgeai.tui" in sys.modules), file=sys.stderr)
sys.exit(code)
"""
RESULTS = REPO / "tests" / "bench" / "fixtures" / "results"


def run_probe(args: list[str], input: str | None = None) -> subprocess.CompletedProcess:
    """The real command, in a fresh process (EDGEAI_HOME is the test's), then what it imported."""
    return subprocess.run([sys.executable, "-c", PROBE, *args], input=input, capture_output=True,
                          text=True, timeout=180)


def commands(tmp: Path) -> dict[str, tuple[list[str], str | None, int]]:
    """id -> (arguments, stdin, exit code): each a real path through the command, cheap here."""
    docs = tmp / "docs"
    return {
        "run": (["run", "--backend", "echo", "--model", "echo", "hi"], None, 0),
        "chat --plain": (["chat", "--plain", "--backend", "echo", "--model", "echo", "--temperature", "0"],
                         "hello\n/system terse\nagain\n/clear\n/bye\n", 0),
        "rag ls": (["rag", "ls"], None, 0),
        "rag query (empty home)": (["rag", "query", "-c", "nothing", "where?"], None, 2),
        "rag add": (["rag", "add", "-c", "notes", str(docs)], None, 0),
        "convert (missing source)": (["convert", str(tmp / "missing"), "--to", "gguf", "--out",
                                      str(tmp / "out")], None, 2),
        "bench llm": (["bench", "llm", "--backend", "echo", "--model", "echo", "--pp", "16", "--tg", "4",
                       "--repeats", "1", "--warmup", "0", "-o", str(tmp / "llm.json")], None, 0),
        "bench compare": (["bench", "compare", str(RESULTS / "llama-bench-rtx4080.json"), "-o",
                           str(tmp / "compare")], None, 0),
        "models list": (["models", "list"], None, 0),
        "doctor": (["doctor"], None, 0),
    }


@pytest.mark.parametrize("name", list(commands(Path("."))))
def test_no_command_but_the_chat_app_imports_the_app(name, tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "rivers.txt").write_text("The Sylvan river rises in the northern hills.\n")
    args, stdin, code = commands(tmp_path)[name]
    result = run_probe(args, stdin)
    assert result.returncode == code, result.stderr
    assert "EDGEAI_TUI_IMPORTED=False" in result.stderr, result.stderr
    if name == "chat --plain":
        assert "Echo: hello" in result.stdout and "Echo: again" in result.stdout
    if code != 0:  # the command's own error, not a usage mistake of this test
        assert "see: edgeai" not in result.stderr, result.stderr


def test_a_query_after_rag_add_does_not_import_the_app_either(tmp_path):
    (tmp_path / "rivers.txt").write_text("The Sylvan river rises in the northern hills.\n")
    assert run_probe(["rag", "add", "-c", "notes", str(tmp_path)]).returncode == 0
    result = run_probe(["rag", "query", "-c", "notes", "Where does the Sylvan rise?"])
    assert result.returncode == 0, result.stderr
    assert "northern hills" in result.stdout and "EDGEAI_TUI_IMPORTED=False" in result.stderr


# -- the same, read from the source --------------------------------------------------------
def _module_package(path: Path) -> str:
    """The package a file's relative imports resolve against (edgeai/cli/chat.py -> edgeai.cli)."""
    folder, *rest = path.relative_to(REPO).parts
    return ".".join([PACKAGES[folder], *rest[:-1]])


def _imported(node: ast.AST, package: str) -> list[str]:
    """The modules an import statement (or importlib.import_module("...")) names."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:
            parent = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join(parent + ([node.module] if node.module else []))
        return [base] + [f"{base}.{alias.name}" for alias in node.names]
    if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
            return [node.args[0].value]
    return []


def imports_of(path: Path, target: str) -> list[tuple[int, str | None]]:
    """(line, enclosing top-level function or None) of every import of `target` (or a module
    below it) in a file, at any depth: lazy imports inside functions count too."""
    package = _module_package(path)
    found: list[tuple[int, str | None]] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            names = _imported(child, package)
            if any(n == target or n.startswith(target + ".") for n in names):
                found.append((child.lineno, function))
            is_function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            visit(child, child.name if is_function and function is None else function)

    visit(ast.parse(path.read_text(encoding="utf-8")), None)
    return found


def test_no_library_module_imports_the_app():
    offenders, allowed = [], []
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            for line, function in imports_of(path, "edgeai.tui"):
                ok = rel in ALLOWED_FILES or (rel, function) in ALLOWED_FUNCTIONS
                (allowed if ok else offenders).append(f"{rel}:{line} (in {function or 'the module'})")
    assert offenders == []
    # the check sees imports: the two allowed places are found, and nothing else is
    assert any(a.startswith("bench/tui.py:") for a in allowed)
    assert [a for a in allowed if a.startswith("edgeai/cli/chat.py:")] != []
    assert {a.split(":")[0] for a in allowed} == {"bench/tui.py", "edgeai/cli/chat.py"}


def test_the_checker_resolves_relative_and_dynamic_imports():
    tree = ast.parse("from ..tui import app\nimport importlib\nimportlib.import_module('edgeai.tui.app')\n")
    names = [n for node in ast.walk(tree) for n in _imported(node, "edgeai.cli")]
    assert "edgeai.tui" in names and "edgeai.tui.app" in names


def test_the_catalog_never_imports_the_runtime():
    modules = sorted((REPO / "models").rglob("*.py"))
    assert len(modules) >= 3
    offenders = [f"{path.relative_to(REPO)}:{line}" for path in modules
                 for line, _ in imports_of(path, "edgeai.runtime")]
    assert offenders == []
    # and at run time: every catalog module, a catalog id and a path resolved, no runtime loaded
    probe = ("import sys, tempfile, pathlib\n"
             "import edgeai.models.catalog, edgeai.models.resolve, edgeai.models.hub\n"
             "from edgeai.config import Settings\n"
             "from edgeai.models import resolve\n"
             "home = pathlib.Path(tempfile.mkdtemp())\n"
             "(home / 'm.gguf').write_bytes(b'GGUF')\n"
             "resolve('echo', Settings(home=home))\n"
             "resolve(str(home / 'm.gguf'), Settings(home=home))\n"
             "print(sorted(m for m in sys.modules if m.startswith('edgeai.runtime')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"



def test_serve_runs_until_ctrl_c_without_the_app(tmp_path):
    """`edgeai serve`: the base URL first, a request served, Ctrl-C -> exit 0, the app never imported."""
    import json
    import signal
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-c", PROBE, "serve", "--backend", "echo", "--model", "echo",
                             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1"), proc.stderr.read()
        with urllib.request.urlopen(f"{url}/models", timeout=30) as reply:
            assert json.load(reply)["data"][0]["id"] == "echo"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "EDGEAI_TUI_IMPORTED=False" in err and "Traceback" not in err
