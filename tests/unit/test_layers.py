"""The import rules of the layers: studio → engines → storage, one way; no tab imports another; the UI never
writes storage itself (it calls engines, which carry the acting user)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TABS = {p.stem for p in (ROOT / "studio").glob("*_tab.py")}
# Names of storage functions that change rows: the UI must go through an engine for these.
WRITE_PREFIXES = ("create_", "add_", "update_", "delete_", "set_", "record_", "rename_", "finish_", "save_",
                  "retire_", "touch", "upsert_", "adopt_", "revoke_", "mark_")

ORM_WRITES = {"create", "update", "delete", "insert", "insert_many", "replace", "delete_instance", "save", "get_or_create"}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
    return out


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def test_storage_imports_neither_engines_nor_studio():
    bad = [(p.name, m) for p in _modules("storage") for m, _ in _imports(p) if m.split(".")[0] in ("engines", "studio", "gradio", "api")]
    assert bad == []


def test_engines_never_import_studio_or_gradio():
    bad = [(str(p.relative_to(ROOT)), m) for p in _modules("engines") for m, _ in _imports(p)
           if m.split(".")[0] in ("studio", "gradio", "api")]
    assert bad == []


ENGINE_PACKAGES = sorted(p.parent.name for p in (ROOT / "engines").glob("*/__init__.py"))


def _engine_package_imports() -> dict[tuple[str, str], list[str]]:
    """(importing subpackage, imported subpackage) → where, for every import between two engine subpackages
    (lazy imports inside functions included)."""
    edges: dict[tuple[str, str], list[str]] = {}
    for pkg in ENGINE_PACKAGES:
        for p in _modules(f"engines/{pkg}"):
            for module, names in _imports(p):
                parts = module.split(".")
                if parts[0] != "engines":
                    continue
                targets = [parts[1]] if len(parts) > 1 else names  # `from engines import training` names the package
                for target in targets:
                    if target in ENGINE_PACKAGES and target != pkg:
                        edges.setdefault((pkg, target), []).append(f"{p.relative_to(ROOT)}: {module}")
    return edges


def test_the_import_walk_sees_engine_packages_importing_each_other():
    """The walk itself works: known one-way imports (training reads datasets' files, evaluation streams through
    inference) are found, so the empty result of the next test means something."""
    edges = _engine_package_imports()
    assert len(ENGINE_PACKAGES) >= 7 and ("training", "datasets") in edges and ("evaluation", "inference") in edges


def test_no_two_engine_packages_import_each_other():
    """Imports between engine subpackages go one way (shared pieces such as the events file, the marked chat
    templates and `Endpoint` live at the top of engines/, model folders in engines/models)."""
    edges = _engine_package_imports()
    both_ways = sorted({tuple(sorted(pair)) for pair in edges if (pair[1], pair[0]) in edges})
    assert both_ways == [], [(a, b, edges[(a, b)][:2], edges[(b, a)][:2]) for a, b in both_ways]


def test_no_tab_imports_another_tab():
    bad = []
    for p in _modules("studio"):
        if p.name == "app.py":
            continue  # app.py assembles the tabs
        for m, _ in _imports(p):
            if m.startswith("studio.") and m.split(".")[1] in TABS and m.split(".")[1] != p.stem:
                bad.append((p.name, m))
    assert bad == []


def test_the_api_imports_neither_studio_nor_gradio_nor_heavy_libraries():
    """The HTTP front end stands beside the UI, not on it; like the UI it runs in the studio process (no torch)."""
    heavy = ("studio", "gradio", "torch", "transformers", "vllm", "unsloth", "ray", "peft", "trl")
    bad = [(str(p.relative_to(ROOT)), m) for p in _modules("api") for m, _ in _imports(p) if m.split(".")[0] in heavy]
    assert bad == []


def test_no_layer_of_the_studio_imports_ray():
    """Ray jobs are reached over HTTP (engines/compute/ray_jobs.py: the Jobs REST API). ray is a dev-lock package for the
    tests' local cluster, not in the UI's requirements: no module of the studio process may import it, lazily or not."""
    bad = [(str(p.relative_to(ROOT)), m) for pkg in ("engines", "studio", "api", "storage") for p in _modules(pkg)
           for m, _ in _imports(p) if m.split(".")[0] == "ray"]
    assert bad == []
    assert (ROOT / "engines" / "compute" / "ray_jobs.py").is_file()  # the walk covers the Ray backend itself


def _storage_writes(package: str) -> list[str]:
    bad = []
    for p in _modules(package):
        tree = ast.parse(p.read_text(encoding="utf-8"))
        aliases = {}  # local name → storage module
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "storage":
                for a in node.names:
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name):
                if node.func.value.id in aliases and (node.func.attr.startswith(WRITE_PREFIXES) or node.func.attr in ORM_WRITES):
                    bad.append(f"{p.name}:{node.lineno} {node.func.value.id}.{node.func.attr}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in aliases \
                    and node.func.id.startswith(WRITE_PREFIXES):
                bad.append(f"{p.name}:{node.lineno} {node.func.id}")
    return bad


def test_studio_never_calls_a_storage_write():
    """Every `storage.<module>.<write>(...)` call from the UI is a bypass of the engines' ownership rules."""
    assert _storage_writes("studio") == []


def test_the_api_never_calls_a_storage_write():
    """The API routes are a second front end: they change rows only through engines, with the acting user."""
    assert _storage_writes("api") == []


# Path methods that write (names no str, datetime or DataFrame method shares), and shutil's copies and moves.
FILE_WRITES = {"write_text", "write_bytes", "mkdir", "unlink", "rmdir", "touch", "symlink_to", "hardlink_to"}
SHUTIL_WRITES = {"copy", "copy2", "copyfile", "copytree", "move", "rmtree"}
# chat_tab.py still writes its export files itself; engines.conversations.export_conversation_files is the engine's
# version of it (the tab is being reworked separately). Remove the entry once the tab calls the engine.
WRITES_PENDING: set[str] = set()  # tabs that still write files themselves (none now)


def _file_writes(path: Path, source: str | None = None) -> list[str]:
    bad = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8") if source is None else source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and (func.attr in FILE_WRITES or (
                func.attr in SHUTIL_WRITES and isinstance(func.value, ast.Name) and func.value.id == "shutil")):
            bad.append(f"{path.name}:{node.lineno} .{func.attr}")
        if isinstance(func, ast.Name) and func.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wax+"):
                bad.append(f"{path.name}:{node.lineno} open(..., {mode.value!r})")
    return bad


def test_the_ui_writes_no_files_itself():
    """Exports, staged uploads and spec files are written by engines (inside the data folders); a tab only shows them."""
    bad = [w for p in _modules("studio") if p.name not in WRITES_PENDING for w in _file_writes(p)]
    assert bad == []


def test_the_file_write_walk_finds_writes():
    """The walk itself works (so the empty list above means something), and a pending tab still has writes to move."""
    source = ("out.write_text(x)\nfolder.mkdir(parents=True)\nshutil.move(a, b)\nopen(p, 'wb')\nopen(p)\n"
              "name.replace('a', 'b')\nframe.rename(columns={})\nnow.replace(tzinfo=None)\n")
    assert [w.split(":")[1] for w in _file_writes(Path("x.py"), source)] == ["1 .write_text", "2 .mkdir", "3 .move",
                                                                              "4 open(..., 'wb')"]
    for name in WRITES_PENDING:  # drop the entry once the tab calls its engine
        assert _file_writes(ROOT / "studio" / name), f"{name} writes no files any more: remove it from WRITES_PENDING"
