"""ruff over the whole tree: unused code, import order, and no `shell=True` anywhere (rules S602/S604/S605)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    r = subprocess.run([ruff, "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout[-3000:]


def test_no_shell_true_in_source():
    offenders = [str(p.relative_to(ROOT)) for p in ROOT.glob("**/*.py")
                 if ".venv" not in p.parts and "data" not in p.parts and "shell=True" in p.read_text() and p.name != "test_lint.py"]
    assert offenders == []
