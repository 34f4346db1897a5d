"""Split each generated `*_connect.py` into its service side and its client side.

protoc-gen-connectrpc writes a service's Protocols, ASGI/WSGI applications and clients
into one module, whose imports then load connectrpc's client stack and pyqwest (an HTTP
client in Rust) into every process that serves: about 3 MB of resident memory and, in
the one-file executable, a 12 MB unpack on every `provd serve`, for classes the server
never uses. Here the clients move to `*_connect_client.py` beside it; each module keeps
only the imports and private module constants it still uses. The edit works on the
syntax tree, so the plugin's layout can change without breaking it silently: a module
that has no client class, or whose client side imports no client library, fails.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

CLIENT_BASES = frozenset({"ConnectClient", "ConnectClientSync"})
CLIENT_SUFFIX = "_client"


def split(path: Path) -> Path:
    """Rewrite `path` without its client classes; write them to `<stem>_client.py`."""
    source = path.read_text()
    tree = ast.parse(source)
    clients = {node for node in tree.body if _is_client_class(node)}
    if not clients:
        raise ValueError(f"{path}: no client class to move (did the plugin change?)")
    service = _prune(_drop(source, tree, lambda node: node in clients))
    client = _prune(
        _drop(source, tree, lambda node: isinstance(node, ast.ClassDef) and node not in clients)
    )
    if "pyqwest" in service or "connectrpc.client" in service:
        raise ValueError(f"{path}: the service side still imports the client stack")
    path.write_text(service)
    client_path = path.with_name(f"{path.stem}{CLIENT_SUFFIX}.py")
    client_path.write_text(client)
    return client_path


def _is_client_class(node: ast.stmt) -> bool:
    return isinstance(node, ast.ClassDef) and any(
        isinstance(base, ast.Name) and base.id in CLIENT_BASES for base in node.bases
    )


def _drop(source: str, tree: ast.Module, dropped: Callable[[ast.stmt], bool]) -> str:
    """`source` without the top-level statements `dropped` selects."""
    lines = source.splitlines(keepends=True)
    for node in sorted((n for n in tree.body if dropped(n)), key=_first_line, reverse=True):
        del lines[_first_line(node) - 1 : node.end_lineno]
    return _tidy("".join(lines))


def _prune(source: str) -> str:
    """`source` without unused imports and unused private constants, until none is left
    (dropping a constant can leave the import it used unused)."""
    while True:
        tree = ast.parse(source)
        used = _names_used(tree)
        edits: list[tuple[ast.stmt, str | None]] = []
        for node, indent in _top_statements(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                kept = [a for a in node.names if (a.asname or a.name) in used]
                if len(kept) < len(node.names):
                    edits.append((node, _import_line(node, kept, indent) if kept else None))
            elif isinstance(node, ast.Assign) and all(
                isinstance(t, ast.Name) and t.id.startswith("_") and t.id not in used
                for t in node.targets
            ):
                edits.append((node, None))
        if not edits:
            return source
        lines = source.splitlines(keepends=True)
        for node, replacement in sorted(edits, key=lambda e: e[0].lineno, reverse=True):
            lines[node.lineno - 1 : node.end_lineno] = [replacement] if replacement else []
        source = _without_empty_blocks("".join(lines))


def _top_statements(tree: ast.Module) -> list[tuple[ast.stmt, str]]:
    """Module-level statements, and those of module-level `if` blocks (the plugin puts
    typing-only imports under `if TYPE_CHECKING:`), with their indentation."""
    found: list[tuple[ast.stmt, str]] = []
    for node in tree.body:
        found.append((node, ""))
        if isinstance(node, ast.If):
            found.extend((inner, " " * inner.col_offset) for inner in node.body)
    return found


def _names_used(tree: ast.Module) -> set[str]:
    """Every name read anywhere, annotations included (`from __future__ import
    annotations` keeps them in the tree)."""
    return {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Store)
    }


def _import_line(node: ast.ImportFrom, kept: list[ast.alias], indent: str) -> str:
    names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in kept)
    return f"{indent}from {'.' * node.level}{node.module or ''} import {names}\n"


def _without_empty_blocks(source: str) -> str:
    """Drop module-level `if` blocks whose body pruning emptied (a block with no body
    would not parse)."""
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    for index, line in enumerate(lines):
        if line.startswith("if ") and line.rstrip().endswith(":"):
            following = next((n for n in lines[index + 1 :] if n.strip()), "")
            if not following.startswith((" ", "\t")):
                continue
        out.append(line)
    return _tidy("".join(out))


def _first_line(node: ast.stmt) -> int:
    decorators: list[ast.expr] = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def _tidy(source: str) -> str:
    """At most two blank lines in a row, one newline at the end."""
    return re.sub(r"\n{4,}", "\n\n\n", source).rstrip("\n") + "\n"
