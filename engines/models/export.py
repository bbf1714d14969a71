"""Model jobs, run as a subprocess: `python -m engines.models.export JOB_DIR`.

job.json names the action: `merge` (adapter + base → one 16-bit model folder), `gguf` (Unsloth's exporter on a
CUDA GPU; elsewhere a llama.cpp converter if one is installed, else a clear error), `push` (a model or adapter
folder to the Hugging Face Hub) or `download` (a Hub model into the hub cache, see download.py). The token comes
from HF_TOKEN in the environment, never from the job file.
Progress and the result go to events.jsonl (start, progress, done, error), like a training worker's.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import traceback
from pathlib import Path
from typing import Any

from engines.events import EventWriter


class JobError(RuntimeError):
    """A failure whose message is already a sentence for the user (shown without the exception's class name)."""


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
                   "chat_template.jinja")


def merge(job: dict[str, Any], ev: EventWriter) -> Path:
    """PEFT merge_and_unload onto the base in 16-bit, saved as safetensors with the base's tokenizer files."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = Path(job["out"])
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    dtype = torch.bfloat16 if job.get("dtype", "bfloat16") == "bfloat16" else torch.float16
    ev.emit("progress", stage="loading base", pct=10)
    base = AutoModelForCausalLM.from_pretrained(job["base"], torch_dtype=dtype)
    ev.emit("progress", stage="applying adapter", pct=40)
    model = PeftModel.from_pretrained(base, job["adapter"]).merge_and_unload()
    ev.emit("progress", stage="saving", pct=70)
    model.save_pretrained(tmp, safe_serialization=True)
    for name in TOKENIZER_FILES:
        for src in (Path(job["adapter"]) / name, Path(job["base"]) / name):
            if src.is_file():
                shutil.copy2(src, tmp / name)
                break
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)  # the folder appears whole or not at all
    ev.emit("progress", stage="saved", pct=100)
    return out


def gguf(job: dict[str, Any], ev: EventWriter) -> Path:
    out = Path(job["out"])
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if cuda:
        try:
            from unsloth import FastLanguageModel  # noqa: F401  # Unsloth must be imported before transformers
        except ImportError:
            cuda = False
    if cuda:
        from unsloth import FastLanguageModel

        ev.emit("progress", stage="loading with Unsloth", pct=10)
        model, tokenizer = FastLanguageModel.from_pretrained(job["adapter"] or job["base"], load_in_4bit=False)
        ev.emit("progress", stage="converting to GGUF (llama.cpp, built by Unsloth)", pct=40)
        model.save_pretrained_gguf(str(out), tokenizer, quantization_method=job.get("quantization", "q4_k_m"))
        return out
    converter = shutil.which("convert_hf_to_gguf.py") or shutil.which("convert-hf-to-gguf")
    if converter is None:
        raise RuntimeError(
            "GGUF export needs Unsloth on a CUDA GPU, or llama.cpp's convert_hf_to_gguf.py on PATH; neither is here "
            "(the package registries carry no CPU build of the converter). Merge the adapter first, then convert the "
            "merged folder with llama.cpp on a machine that has it.")
    import subprocess

    src = Path(job["base"])
    ev.emit("progress", stage="converting to GGUF (llama.cpp)", pct=30)
    subprocess.run([sys.executable, converter, str(src), "--outfile", str(out), "--outtype", job.get("outtype", "f16")],
                   check=True)
    return out


def push(job: dict[str, Any], ev: EventWriter) -> str:
    from huggingface_hub import HfApi

    token = os.environ.get("HF_TOKEN")
    if not token:
        raise RuntimeError("Pushing needs a Hugging Face token: set HUGGINGFACE_TOKEN in .env and restart the studio.")
    api = HfApi(token=token)
    ev.emit("progress", stage="creating the repository", pct=10)
    api.create_repo(job["repo_id"], private=bool(job.get("private", True)), exist_ok=True)
    ev.emit("progress", stage="uploading", pct=30)
    info = api.upload_folder(repo_id=job["repo_id"], folder_path=job["folder"], commit_message="Upload from Chat Studio")
    ev.emit("progress", stage="uploaded", pct=100)
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{job['repo_id']}")


def download(job: dict[str, Any], ev: EventWriter) -> str:
    from engines.models.download import download as fetch

    return fetch(job, lambda **fields: ev.emit("progress", **fields))


ACTIONS = {"merge": merge, "gguf": gguf, "push": push, "download": download}


def run(job_dir: Path) -> int:
    job = json.loads((job_dir / "job.json").read_text(encoding="utf-8"))
    ev = EventWriter(job_dir / "events.jsonl")
    ev.emit("start", action=job["action"], pid=os.getpid())
    try:
        result = ACTIONS[job["action"]](job, ev)
    except Exception as exc:  # noqa: BLE001  # every failure becomes one readable event for the UI
        message = str(exc) if isinstance(exc, JobError) else f"{exc.__class__.__name__}: {exc}"
        ev.emit("error", message=message, traceback=traceback.format_exc()[-4000:])
        return 1
    ev.emit("done", result=str(result))
    ev.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        print("usage: python -m engines.models.export JOB_DIR", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    # Run the imported module, not __main__: download.py raises engines.models.export.JobError, which must be the
    # class run() checks.
    from engines.models.export import main as _main

    raise SystemExit(_main())
