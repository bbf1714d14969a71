"""bench/gpu_proof.sh works before a GPU session spends time on it: its --dry-run runs the same worker path on CPU
(real transformers + PEFT LoRA and bitsandbytes 4-bit QLoRA, the adapter loaded back with PEFT) and writes the markdown
section for bench/results/gpu.md. The CUDA run itself is untested here (no GPU)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _proof(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("OUT", None)
    return subprocess.run(["bash", "bench/gpu_proof.sh", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_packed_model_travels_in_parts_and_comes_back_whole(tmp_path, bundled_model) -> None:
    packed = tmp_path / "gpu-model"
    r = _proof("--model", str(bundled_model.source), "--pack-model", str(packed))
    assert r.returncode == 0, r.stderr[-2000:]
    parts = sorted((tmp_path / "gpu-model-parts").glob("*/model.safetensors.part-*"))
    assert len(parts) == 5 and all(p.stat().st_size <= 55 * 1024**2 for p in parts)  # each fits one 64 MiB carry
    assert not list(packed.glob("*.safetensors")) and (packed / "tokenizer.json").is_file()
    r = _proof("--model", str(packed), "--work", str(tmp_path / "work"), "--assemble-only")
    assert r.returncode == 0 and "reassembled from 5 carried parts" in r.stdout, r.stdout + r.stderr
    assert _sha(tmp_path / "work" / "model" / "model.safetensors") == _sha(Path(bundled_model.source) / "model.safetensors")


def test_gpu_proof_dry_run_on_cpu(tmp_path, bundled_model) -> None:
    """The whole proof on CPU, with a packed model whose weight parts did not arrive: random weights, same shapes."""
    packed = tmp_path / "gpu-model"
    assert _proof("--model", str(bundled_model.source), "--pack-model", str(packed)).returncode == 0
    shutil.rmtree(tmp_path / "gpu-model-parts" / "04")
    out = tmp_path / "gpu.md"
    r = _proof("--dry-run", "--steps", "1", "--model", str(packed), "--work", str(tmp_path / "work"), "--out", str(out))
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    report = json.loads((tmp_path / "work" / "gpu-proof.json").read_text())
    runs = {x["name"]: x for x in report["results"]}
    assert runs["transformers-lora"]["steps"] == 1 and runs["transformers-lora"]["load_in_4bit"] is False
    assert runs["transformers-qlora"]["load_in_4bit"] is True  # bitsandbytes 4-bit, on CPU here
    for name in ("transformers-lora", "transformers-qlora"):
        assert runs[name]["backend"] == "transformers" and runs[name]["device"] == "cpu"
        assert runs[name]["steps_per_s"] > 0 and runs[name]["rss"] > 0 and runs[name]["gpu_alloc"] is None
        assert runs[name]["reload"]["device"] == "cpu" and "answer" in runs[name]["reload"]
    assert runs["unsloth-qlora"]["skipped"] == "needs a CUDA GPU"
    text = out.read_text()
    assert text.startswith("## ") and "DRY RUN on CPU" in text and "weights: RANDOM" in text
    assert "| transformers-qlora | transformers | cpu | True | 1 |" in text and "peak GPU allocated" in text


def test_gpu_proof_refuses_a_machine_without_a_gpu_unless_dry(tmp_path) -> None:
    r = _proof("--work", str(tmp_path), timeout=300)
    assert r.returncode == 2 and "no CUDA GPU is visible" in r.stderr
    r = _proof("--bogus", timeout=60)
    assert r.returncode == 2 and "usage:" in r.stderr
