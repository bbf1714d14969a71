"""Convert a GGUF checkpoint into a Hugging Face folder vLLM and PEFT can load.

Runs as a subprocess (it imports torch/transformers): `python -m engines.models.convert_gguf GGUF OUT_DIR`.
Writes into OUT_DIR.partial and renames at the end, so a crash never leaves a half folder behind.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path


def convert(gguf_file: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    folder, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    # The weights are dequantised now; the GGUF quantization config would make save_pretrained refuse.
    model.config.quantization_config = None
    if hasattr(model.config, "__dict__"):
        model.config.__dict__.pop("quantization_config", None)
    model.hf_quantizer = None
    model.is_quantized = False
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "studio_source.json").write_text(json.dumps({"gguf": str(gguf_file)}))
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)
    return out_dir


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m engines.models.convert_gguf GGUF_FILE OUT_DIR")
    print(convert(Path(sys.argv[1]), Path(sys.argv[2])))
