"""The import graph of both packages has no cycles (docs/architecture.md; the floors themselves are
`import-linter` contracts in pyproject.toml, run by `make test`)."""

from __future__ import annotations

import subprocess
import sys

import grimp


def _cycles(package: str) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm), or self-imports."""
    graph = grimp.build_graph(package)
    modules = sorted(graph.modules)
    edges = {module: sorted(graph.find_modules_directly_imported_by(module)) for module in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for imported in edges[module]:
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in on_stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in edges[module]:
                groups.append(sorted(group))

    for module in modules:
        if module not in index:
            visit(module)
    return groups


def test_the_server_package_has_no_import_cycle() -> None:
    assert _cycles("config_server") == []


def test_the_client_package_has_no_import_cycle() -> None:
    assert _cycles("config_client") == []


def test_the_gunicorn_master_loads_neither_gitpython_nor_flask() -> None:
    """What `config-server serve` imports before gunicorn forks (and what gunicorn imports to find the
    worker class): no GitPython, whose threads and subprocesses must come after gevent's patches in
    each worker. A package's `__init__` is imported too, which the import-linter contract
    cannot see; this test does, in a fresh interpreter."""
    code = (
        "import sys, config_server.cli, config_server.runtime.serving, config_server.gevent_worker\n"
        "print(sorted(m for m in ('git', 'gitdb', 'flask') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
