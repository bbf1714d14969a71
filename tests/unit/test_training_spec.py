"""TrainSpec validation, presets, YAML, estimates and the worker command: all before anything starts."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from engines.training import PRESETS, SpecError, TrainSpec, preset, spec_from_yaml, spec_to_yaml, validate_spec
from engines.training.estimate import ModelShape, estimate, format_duration
from engines.training.hardware import Gpu, Hardware

BASE = {"base_model": "SmolLM2-135M-Instruct", "dataset": "assets/datasets/studio-helper-en.jsonl", "output_name": "my-adapter"}
CPU = Hardware(cpus=2, ram_total_gb=24, ram_available_gb=20)
H100 = Hardware(cpus=16, ram_total_gb=128, ram_available_gb=120, gpus=[Gpu(0, "NVIDIA H100 80GB HBM3", 79.6)])
SHAPE_8B = ModelShape(params=8_030_000_000, hidden=4096, layers=32, vocab=128256, intermediate=14336, heads=32, kv_heads=8)


def test_defaults_are_valid_and_train_all_linear_layers_on_responses():
    spec = validate_spec(BASE)
    assert spec.train_on_responses_only is True
    assert set(spec.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("lora_r", 0), ("lora_r", 4096), ("learning_rate", 0.5), ("learning_rate", 0), ("batch_size", 0), ("epochs", 0),
     ("lora_dropout", 0.9), ("warmup_ratio", 0.9), ("max_seq_len", 8), ("eval_split", 0.8), ("method", "full"),
     ("lr_scheduler", "fancy"), ("target_modules", []), ("output_name", "has space"), ("grad_accum", -1)],
)
def test_out_of_range_values_name_their_field(field, value):
    with pytest.raises(SpecError) as err:
        validate_spec({**BASE, field: value})
    assert list(err.value.fields) == [field]
    assert err.value.fields[field]


def test_every_bad_field_is_reported_at_once():
    with pytest.raises(SpecError) as err:
        validate_spec({**BASE, "lora_r": -1, "learning_rate": 3, "batch_size": 0})
    assert set(err.value.fields) == {"lora_r", "learning_rate", "batch_size"}


def test_rank_above_the_servers_limit_is_refused():
    with pytest.raises(SpecError) as err:
        validate_spec({**BASE, "lora_r": 128}, max_lora_rank=64)
    assert "64" in err.value.fields["lora_r"]


def test_early_stopping_needs_an_eval_split():
    with pytest.raises(SpecError):
        validate_spec({**BASE, "early_stop_patience": 3, "eval_split": 0})
    assert validate_spec({**BASE, "early_stop_patience": 3, "eval_split": 0.1}).early_stop_patience == 3


@pytest.mark.parametrize("payload", ["$(touch {f})", "`touch {f}`", "x; touch {f}", "x && touch {f}", "x | touch {f}", "x\ntouch {f}"])
@pytest.mark.parametrize("field", ["base_model", "dataset", "output_name", "target_modules"])
def test_shell_metacharacters_in_string_fields_run_nothing(tmp_path, field, payload):
    marker = tmp_path / "pwned"
    value = payload.format(f=marker)
    data = {**BASE, field: [value] if field == "target_modules" else value}
    try:
        spec = validate_spec(data)
    except SpecError as exc:
        assert field in exc.fields
    else:  # accepted as an inert string: the worker argv is a list, never a shell line
        cmd = _jobs(tmp_path).command(tmp_path / spec.output_name)
        assert isinstance(cmd, list) and cmd[1:3] == ["-m", "engines.training.worker"]
    assert not marker.exists()


def test_yaml_round_trip_and_bad_yaml():
    spec = validate_spec({**BASE, "lora_r": 32, "target_modules": ["q_proj", "v_proj"], "packing": True})
    assert spec_from_yaml(spec_to_yaml(spec)) == spec
    with pytest.raises(SpecError) as err:
        spec_from_yaml("lora_r: [unclosed")
    assert "yaml" in err.value.fields
    with pytest.raises(SpecError) as err:
        spec_from_yaml(spec_to_yaml(spec).replace("lora_r: 32", "lora_r: 9999"))
    assert "lora_r" in err.value.fields


@pytest.mark.parametrize("hw", [CPU, H100], ids=["cpu", "h100"])
@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_valid_specs_and_adapt_to_the_hardware(name, hw):
    spec = validate_spec({**BASE, **preset(name, hw)}, max_lora_rank=64)
    assert spec.method == ("qlora" if hw.has_gpu else "lora")
    if name == "quick":
        assert spec.max_steps > 0


def test_estimate_qlora_needs_far_less_memory_and_says_when_it_does_not_fit():
    spec_q = TrainSpec(**{**BASE, **preset("balanced", H100)})
    spec_l = spec_q.model_copy(update={"method": "lora"})
    q = estimate(spec_q, SHAPE_8B, H100, rows=1000, avg_tokens=300)
    lo = estimate(spec_l, SHAPE_8B, H100, rows=1000, avg_tokens=300)
    assert q.memory_parts["weights"] < lo.memory_parts["weights"] / 2.5
    small = Hardware(cpus=8, ram_total_gb=32, ram_available_gb=30, gpus=[Gpu(0, "NVIDIA L4", 22.5)])
    assert estimate(spec_l, SHAPE_8B, small, rows=1000, avg_tokens=300).fits is False
    assert q.fits is True
    # 1000 rows, 10% eval, batch 8 x accum 2, 2 epochs -> ceil(900/16) * 2 steps
    assert q.steps == 57 * 2
    assert q.seconds > 0 and "min" in format_duration(600) and format_duration(30) == "30s"


def _jobs(tmp_path):
    """A JobManager shell with settings only (no thread, no DB): enough for its command."""
    from engines.settings import load_settings
    from engines.training.jobs import JobManager

    jm = JobManager.__new__(JobManager)
    jm.settings = load_settings(data_dir=tmp_path)
    return jm


def test_worker_command_is_an_argv_list(tmp_path):
    jm = _jobs(tmp_path)
    cmd = jm.command(tmp_path / "runs" / "a b")
    assert cmd[1:3] == ["-m", "engines.training.worker"] and cmd[-1].endswith("a b")
    assert shlex.split(jm.command_preview("x"))[-1] == str(Path(jm.settings.runs_path / "x"))
