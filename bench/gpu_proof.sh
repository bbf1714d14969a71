#!/usr/bin/env bash
# GPU proof: the studio's training worker on CUDA with the bundled model, one short prepared run.
#
#   bash bench/gpu_proof.sh                      on a GPU machine (torch, transformers, peft, accelerate installed)
#   bash bench/gpu_proof.sh --dry-run            the same path on CPU, 2 steps per backend (tests/unit/test_gpu_proof.py)
#   bash bench/gpu_proof.sh --fetch-wheels DIR   HERE, with the registry: the wheels to carry (bitsandbytes, pydantic; 47 MB)
#   bash bench/gpu_proof.sh --pack-model DIR     HERE: the bundled model made carriable (64 MiB per carry): DIR holds
#                                                config + tokenizer (3.5 MB), DIR-parts/00..04 the bf16 weights in 55 MiB parts
#   options: --steps N (default 30 on CUDA, 2 dry), --model DIR, --wheels DIR, --out FILE, --work DIR
#
# The model: --model DIR (default data/models/SmolLM2-135M-Instruct). A packed DIR without weights is completed from
# DIR-parts/*/ when every part is there (sha256 checked); else the script trains the SAME architecture from random
# weights (seed 0): steps/s and GPU memory are those of the bundled model, loss and answers are not, and it says so.
#
# Per backend it runs `python -m engines.training.worker RUN_DIR` exactly as the studio does (spec.json + job.json):
#   transformers + PEFT LoRA 16-bit (bf16), transformers + PEFT QLoRA 4-bit nf4 (bitsandbytes), Unsloth QLoRA (only if
#   `unsloth` imports: its wheels + trl + bitsandbytes exceed the 64 MiB carry limit, so normally it is reported skipped),
# then loads each adapter back with PEFT on the same device and generates a few greedy tokens.
# Prints steps/s, tokens/s, peak GPU memory (torch.cuda.max_memory_allocated/reserved of the worker) and loss, and writes
# a markdown section ready to paste into bench/results/gpu.md to --out (default: $OUT/gpu-proof.md, else a temp file).
# Nothing is downloaded: --wheels DIR installs carried wheels with pip --no-index into a folder on PYTHONPATH.
# Exit 0 when every backend that could run trained and loaded back; 1 otherwise; 2 for bad usage / no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dry=0 assemble_only=0 steps="" model="data/models/SmolLM2-135M-Instruct" wheels="" out="" work=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run|--cpu) dry=1 ;;
    --steps) steps=$2; shift ;;
    --model) model=$2; shift ;;
    --wheels) wheels=$2; shift ;;
    --out) out=$2; shift ;;
    --work) work=$2; shift ;;
    --fetch-wheels)
      dest=${2:?usage: --fetch-wheels DIR}; mkdir -p "$dest"
      # What the device image lacks (its package list: /work/.library/device/KINDS.md): bitsandbytes, and pydantic for
      # TrainSpec. bitsandbytes is one py3 wheel; pydantic-core is per CPython (3.12 there, 3.11 for a local check).
      "$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 --python-version 3.12 \
        -d "$dest" bitsandbytes==0.50.2 pydantic==2.14.3 annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
      for v in 3.11 3.12; do
        "$PY" -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_17_x86_64 --python-version "$v" \
          -d "$dest" pydantic-core==2.50.4
      done
      du -sh "$dest"; ls "$dest"; exit 0 ;;
    --pack-model)
      dest=${2:?usage: --pack-model DIR}; rm -rf "$dest" "$dest-parts"; mkdir -p "$dest" "$dest-parts"
      for f in "$model"/*; do case "$f" in *.safetensors) ;; *) cp "$f" "$dest/" ;; esac; done
      (cd "$model" && sha256sum model.safetensors) > "$dest/model.safetensors.sha256"
      split -b 55M -d -a 2 "$model/model.safetensors" "$dest-parts/model.safetensors.part-"
      for part in "$dest-parts"/model.safetensors.part-*; do n=${part##*-}; mkdir "$dest-parts/$n"; mv "$part" "$dest-parts/$n/"; done
      du -sh "$dest" "$dest-parts"/*; exit 0 ;;
    --assemble-only) assemble_only=1 ;;
    -h|--help) sed -n 2,23p "$0"; exit 0 ;;
    *) echo "usage: bash bench/gpu_proof.sh [--dry-run] [--steps N] [--model DIR] [--wheels DIR] [--out FILE] [--work DIR]" >&2; exit 2 ;;
  esac
  shift
done
[ -n "$work" ] || work=$(mktemp -d)
mkdir -p "$work"
[ -n "$out" ] || out=${OUT:+$OUT/gpu-proof.md}
[ -n "$out" ] || out="$work/gpu-proof.md"
note=""
if [ ! -f "$model/model.safetensors" ] && [ -f "$model/model.safetensors.sha256" ]; then
  # A packed model: put its weights back together from the parts carried one by one, or fall back to random weights.
  parts=("$model"-parts/*/model.safetensors.part-*)
  full="$work/model"; mkdir -p "$full"
  cp "$model"/* "$full/"
  if [ -e "${parts[0]}" ] && cat "${parts[@]}" > "$full/model.safetensors" && (cd "$full" && sha256sum -c --quiet model.safetensors.sha256); then
    note="weights: the bundled model, reassembled from ${#parts[@]} carried parts (sha256 checked)"
  else
    rm -f "$full/model.safetensors"
    note="weights: RANDOM (seed 0) with the bundled model's config and tokenizer — ${#parts[@]} weight parts found, incomplete or missing; steps/s and memory are the bundled model's, loss and answers are not"
  fi
  model=$full
fi
echo "model: $model${note:+ ($note)}"
[ "$assemble_only" = 1 ] && exit 0
if [ -n "$wheels" ]; then
  site="$work/site"
  # Only what is missing: never shadow the machine's own torch/transformers. --no-index: nothing is downloaded.
  need=()
  "$PY" -c 'import bitsandbytes' 2>/dev/null || need+=(bitsandbytes)
  "$PY" -c 'import pydantic' 2>/dev/null || need+=(pydantic pydantic-core annotated-types typing-inspection typing-extensions)
  if [ ${#need[@]} -gt 0 ]; then
    "$PY" -m pip install -q --no-index --no-deps --find-links "$wheels" --target "$site" "${need[@]}"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
export PROOF_NOTE=$note PROOF_DRY=$dry PROOF_STEPS=$steps PROOF_MODEL=$model PROOF_OUT=$out PROOF_WORK=$work PROOF_WHEELS=$wheels
export TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MLFLOW_ALLOW_FILE_STORE=true
exec "$PY" - <<'PY'
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

dry = os.environ["PROOF_DRY"] == "1"
work = Path(os.environ["PROOF_WORK"]).resolve()
model = Path(os.environ["PROOF_MODEL"]).resolve()
out = Path(os.environ["PROOF_OUT"])
t_import = time.monotonic()
import torch  # noqa: E402

cuda = torch.cuda.is_available()
if not cuda and not dry:
    print("error: no CUDA GPU is visible to torch; use --dry-run to exercise the same path on CPU", file=sys.stderr)
    sys.exit(2)
note = os.environ["PROOF_NOTE"]
if note.startswith("weights: RANDOM"):  # a packed model whose weight parts did not all arrive (see above)
    from transformers import AutoConfig, AutoModelForCausalLM as _Auto

    torch.manual_seed(0)
    _Auto.from_config(AutoConfig.from_pretrained(model), dtype=torch.bfloat16).save_pretrained(model)
if not (model / "config.json").is_file():
    print(f"error: no model folder at {model} (the bundled SmolLM2-135M-Instruct, converted: see tests/conftest.py)",
          file=sys.stderr)
    sys.exit(2)
steps = int(os.environ["PROOF_STEPS"] or (2 if dry else 30))
device = "cuda" if cuda else "cpu"
batch = 2 if dry else 8  # the CPU dry run proves the path, not the speed


def version(name):
    try:
        return __import__(name).__version__
    except Exception as exc:  # noqa: BLE001
        return f"not importable ({exc.__class__.__name__}: {str(exc)[:120]})"


versions = {n: version(n) for n in ("torch", "transformers", "peft", "accelerate", "bitsandbytes", "pydantic", "mlflow")}
versions["unsloth"] = "installed" if importlib.util.find_spec("unsloth") else "not installed"
gpu = f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 1024**3:.0f} GiB)" if cuda else \
    f"none: CPU dry run ({os.cpu_count()} cores)"
print(f"device: {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); python {platform.python_version()}")
print("packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))

rows = [{"messages": [{"role": "user", "content": f"What is {i} plus {i + 3}?"},
                      {"role": "assistant", "content": f"{i} plus {i + 3} is {2 * i + 3}. Adding the ones first helps."}]}
        for i in range(64)]
dataset = work / "proof.jsonl"
dataset.write_text("".join(json.dumps(r) + "\n" for r in rows))

bnb_ok = importlib.util.find_spec("bitsandbytes") is not None and not versions["bitsandbytes"].startswith("not")
plan = [("transformers", "lora", None),
        ("transformers", "qlora", None if bnb_ok else f"bitsandbytes {versions['bitsandbytes']}: carry its wheel (--wheels)"),
        ("unsloth", "qlora", None if (cuda and versions["unsloth"] == "installed") else
         ("needs a CUDA GPU" if not cuda else "unsloth is not installed (with trl and bitsandbytes it exceeds the 64 MiB carry"
                                              " limit); it runs in the Docker image's GPU environment"))]
results, failures = [], []
for backend, method, skip in plan:
    name = f"{backend}-{method}"
    if skip:
        results.append({"name": name, "skipped": skip})
        print(f"[{name}] skipped: {skip}")
        continue
    run_dir = work / name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "events.jsonl").unlink(missing_ok=True)
    spec = {"base_model": "SmolLM2-135M-Instruct", "dataset": str(dataset), "output_name": f"proof-{name}", "method": method,
            "max_steps": steps, "batch_size": batch, "lora_r": 16, "lora_alpha": 32, "max_seq_len": 256, "save_steps": 100000,
            "warmup_ratio": 0.0, "learning_rate": 2e-4}
    job = {"model_path": str(model), "dataset_path": str(dataset), "tracking_uri": f"sqlite:///{work / 'mlflow.db'}",
           "artifact_root": str(work / "mlflow-artifacts"), "backend": backend}
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=2))
    (run_dir / "job.json").write_text(json.dumps(job, indent=2))
    t0 = time.monotonic()
    with open(run_dir / "train.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "engines.training.worker", str(run_dir)], stdout=log,
                            stderr=subprocess.STDOUT, timeout=900, check=False).returncode
    wall = time.monotonic() - t0
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    done = next((e for e in events if e["type"] == "done"), None)
    start = next((e for e in events if e["type"] == "start"), {})
    info = next((e for e in events if e["type"] == "log" and "trainable_params" in e), {})
    if rc != 0 or done is None:
        err = next((e.get("message") for e in events if e["type"] == "error"), None) or (run_dir / "train.log").read_text()[-800:]
        results.append({"name": name, "failed": err})
        failures.append(name)
        print(f"[{name}] FAILED (exit {rc}): {err}")
        continue
    r = {"name": name, "backend": start.get("backend"), "method": method, "device": info.get("device"),
         "load_in_4bit": info.get("load_in_4bit"), "steps": done.get("step"), "steps_per_s": done.get("steps_per_s"),
         "tokens_per_s": done.get("tokens_per_s"), "train_s": done.get("train_seconds"), "wall_s": round(wall, 1),
         "loss": done.get("train_loss"), "gpu_alloc": done.get("peak_gpu_allocated_gib"),
         "gpu_reserved": done.get("peak_gpu_reserved_gib"), "rss": done.get("peak_rss_gib"), "adapter": done.get("adapter")}
    results.append(r)
    print(f"[{name}] backend={r['backend']} device={r['device']} 4bit={r['load_in_4bit']} steps={r['steps']} "
          f"steps/s={r['steps_per_s']} tokens/s={r['tokens_per_s']} peak GPU alloc={r['gpu_alloc']} GiB "
          f"reserved={r['gpu_reserved']} GiB peak RSS={r['rss']} GiB loss={r['loss']} wall={r['wall_s']} s")

# Load every adapter back with PEFT on the same device and answer one prompt greedily.
from peft import PeftModel  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

tok = AutoTokenizer.from_pretrained(model)
dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) if cuda else torch.float32
prompt = tok.apply_chat_template([{"role": "user", "content": "What is 5 plus 8?"}], add_generation_prompt=True,
                                 return_tensors="pt", return_dict=True)
for r in results:
    if not r.get("adapter"):
        continue
    t0 = time.monotonic()
    try:
        base = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
        peft_model = PeftModel.from_pretrained(base, r["adapter"]).to(device).eval()
        placed = str(next(peft_model.parameters()).device)
        with torch.no_grad():
            gen = peft_model.generate(**{k: v.to(device) for k, v in prompt.items()}, max_new_tokens=16, do_sample=False)
        r["reload"] = {"device": placed, "seconds": round(time.monotonic() - t0, 2),
                       "answer": tok.decode(gen[0, prompt["input_ids"].shape[1]:], skip_special_tokens=True).strip()}
        print(f"[{r['name']}] adapter loaded back with PEFT on {placed} in {r['reload']['seconds']} s: {r['reload']['answer']!r}")
        del peft_model, base
        if cuda:
            torch.cuda.empty_cache()
    except Exception as exc:  # noqa: BLE001
        r["reload"] = {"error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
        failures.append(r["name"] + " (reload)")
        print(f"[{r['name']}] adapter reload FAILED: {r['reload']['error']}")

when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
md = [f"## {when} — {gpu}{' (DRY RUN on CPU: not a GPU result)' if dry and not cuda else ''}", "",
      f"torch {torch.__version__} (CUDA {torch.version.cuda}), python {platform.python_version()}; "
      + ", ".join(f"{k} {v}" for k, v in versions.items() if k != "torch"),
      f"Model: bundled SmolLM2-135M-Instruct ({note or 'weights: the converted bundled model'}); {len(rows)} chat rows, batch {batch}, max_seq_len 256, LoRA r=16 on all 7 "
      f"projections, {steps} steps. Command: `bash bench/gpu_proof.sh{' --dry-run' if dry else ''} --steps {steps}"
      + (f" --wheels {os.environ['PROOF_WHEELS']}" if os.environ["PROOF_WHEELS"] else "") + "`", "",
      "| run | backend | device | 4-bit | steps | steps/s | tokens/s | peak GPU allocated | peak GPU reserved | peak RSS | "
      "train loss | wall | adapter back with PEFT |",
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]


def gib(v):
    return "—" if v is None else f"{v:.2f} GiB"


for r in results:
    if "skipped" in r:
        md.append(f"| {r['name']} | skipped: {r['skipped']} |" + " |" * 11)
    elif "failed" in r:
        md.append(f"| {r['name']} | FAILED: {r['failed'][:200]!r} |" + " |" * 11)
    else:
        back = r.get("reload", {})
        back_s = f"on {back['device']} in {back['seconds']} s: {back['answer']!r}" if "answer" in back else \
            f"FAILED: {back.get('error')}"
        md.append(f"| {r['name']} | {r['backend']} | {r['device']} | {bool(r['load_in_4bit'])} | {r['steps']} | "
                  f"{r['steps_per_s']} | {r['tokens_per_s']} | {gib(r['gpu_alloc'])} | {gib(r['gpu_reserved'])} | "
                  f"{gib(r['rss'])} | {r['loss']} | {r['wall_s']} s | {back_s} |")
md += ["", f"Total {time.monotonic() - t_import:.0f} s. " + (f"Failed: {', '.join(failures)}." if failures else "All runs passed."), ""]
text = "\n".join(md)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(text)
summary = json.dumps({"dry": dry, "device": gpu, "note": note, "results": results, "failures": failures}, indent=2)
for folder in {work, out.parent}:  # beside the markdown too: $OUT brings both back from a device machine
    (folder / "gpu-proof.json").write_text(summary)
print("\n----- bench/results/gpu.md section (also in " + str(out) + ") -----\n" + text)
sys.exit(1 if failures else 0)
PY
