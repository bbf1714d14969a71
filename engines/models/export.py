"""Model jobs, run as a subprocess: `python -m engines.models.export JOB_DIR`.

job.json names the action: `merge` (adapter + base → one 16-bit model folder), `gguf` (Unsloth's exporter on a
CUDA GPU; elsewhere a llama.cpp converter if one is installed, else a clear error), `push` (a model or adapter
folder to the Hugging Face Hub) or `download` (a Hub model into the hub cache, see download.py). The token comes
from HF_TOKEN in the environment, never from the job file.
Progress and the result go to events.jsonl (start, progress, done, error), like a training worker's.

`python -m engines.models.export --bundle DIR` is a merge sent to a Ray node (no shared file system): DIR is the
job's bundle (job.json, the adapter folder) — read only. The merge happens in a fresh scratch folder
(STUDIO_SCRATCH_DIR or the system's temp folder, removed at the end); events are also printed on stdout behind
EVENT_MARK for the studio to read through the job's log; the merged folder goes to the MLflow artifact store (the
`done` event names its run and artifact path) and the studio downloads it from there. Nothing else is read or written
on the node but the base model named in job.json. SIGTERM (Ray's stop) ends it at once, leaving nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from engines.events import EventWriter


class JobError(RuntimeError):
    """A failure whose message is already a sentence for the user (shown without the exception's class name)."""


class Stopped(BaseException):
    """SIGTERM arrived (a cancelled remote job): not an Exception, so no handler mistakes it for a failure."""


MERGED_ARTIFACT = "merged"  # the artifact path of a remote merge's folder in its MLflow run
EXPERIMENT = "chat-studio-exports"
# Like the training worker's: an experiment an embedded studio created with a local file:// location is not one the
# nodes and the studio share, so remote exports use this one then.
SHARED_EXPERIMENT = "chat-studio-exports-cluster"


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
        _error(ev, exc)
        return 1
    ev.emit("done", result=str(result))
    ev.close()
    return 0


def _error(ev: EventWriter, exc: BaseException) -> None:
    """One readable error event for the UI (a JobError's message is shown as it is)."""
    message = str(exc) if isinstance(exc, JobError) else f"{exc.__class__.__name__}: {exc}"
    ev.emit("error", message=message, traceback=traceback.format_exc()[-4000:])


def _stop(*_: Any) -> None:
    raise Stopped


class _Scaled:
    """An EventWriter whose progress stops at `top` %: a remote merge still stores its result after `merge` is done."""

    def __init__(self, ev: EventWriter, top: float) -> None:
        self.ev, self.top = ev, top

    def emit(self, type_: str, **fields: Any) -> None:
        if type_ == "progress" and "pct" in fields:
            fields["pct"] = round(float(fields["pct"]) * self.top / 100, 1)
        self.ev.emit(type_, **fields)


def store_merged(folder: Path, job: dict[str, Any]) -> str:
    """Log a merged folder to a new MLflow run on the tracking server (`merged/`); returns the run's id."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    mlflow.set_tracking_uri(job["tracking_uri"])
    experiment = None
    for name in (EXPERIMENT, SHARED_EXPERIMENT):  # the server's own artifact store, never a file:// folder
        found = mlflow.get_experiment_by_name(name)
        if found is not None and not str(found.artifact_location).startswith("file:"):
            experiment = found.experiment_id
            break
    if experiment is None:
        experiment = mlflow.create_experiment(SHARED_EXPERIMENT if mlflow.get_experiment_by_name(EXPERIMENT) else EXPERIMENT)
    with mlflow.start_run(experiment_id=experiment, run_name=str(job.get("name") or "merge")) as run:
        mlflow.set_tags({"chat_studio_export": job["action"], "model": str(job.get("model", ""))})
        mlflow.log_artifacts(str(folder), artifact_path=MERGED_ARTIFACT)
    return run.info.run_id


def run_bundle(bundle: Path) -> int:
    """A remote merge: merge in a scratch folder from the bundle's adapter and the node's base model, store the result
    in the MLflow artifact store, and remove the scratch folder (also when stopped)."""
    scratch = Path(tempfile.mkdtemp(prefix="chat-studio-export-", dir=os.environ.get("STUDIO_SCRATCH_DIR") or None))
    ev = EventWriter(scratch / "events.jsonl", echo=sys.stdout)
    signal.signal(signal.SIGTERM, _stop)  # Ray's stop: end now, through the finally below
    try:
        job = json.loads((bundle / "job.json").read_text(encoding="utf-8"))
        if job.get("action") != "merge":
            raise JobError(f"Only merges run as remote jobs, not {job.get('action')!r}.")
        job |= {"adapter": str(bundle / job["adapter"]), "out": str(scratch / MERGED_ARTIFACT)}
        ev.emit("start", action=job["action"], pid=os.getpid(), host=socket.gethostname(), work_dir=str(scratch))
        merged = merge(job, _Scaled(ev, 80.0))  # type: ignore[arg-type]  # emits like an EventWriter
        ev.emit("progress", stage="storing in the MLflow artifact store", pct=85)
        run_id = store_merged(merged, job)
        ev.emit("done", artifact=MERGED_ARTIFACT, mlflow_run_id=run_id)
        return 0
    except Stopped:
        ev.emit("cancelled")
        return 143
    except Exception as exc:  # noqa: BLE001  # every failure becomes one readable event for the UI
        _error(ev, exc)
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        ev.close()
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) == 2 and args[0] == "--bundle" and (Path(args[1]) / "job.json").is_file():
        return run_bundle(Path(args[1]).resolve())
    if len(args) != 1:
        print("usage: python -m engines.models.export JOB_DIR\n"
              "       python -m engines.models.export --bundle DIR   (a remote merge's bundle)", file=sys.stderr)
        return 2
    return run(Path(args[0]))


if __name__ == "__main__":
    # Run the imported module, not __main__: download.py raises engines.models.export.JobError, which must be the
    # class run() checks.
    from engines.models.export import main as _main

    raise SystemExit(_main())
