"""The server command line and environment (no server started here; the real one is in tests/integration)."""

from engines.models import ModelRecord
from engines.serving import ServerManager
from engines.settings import load_settings


def manager(tmp_path, **kw):
    return ServerManager(load_settings(data_dir=tmp_path, **kw))


def test_command_is_an_argv_list_bound_to_loopback_with_runtime_lora(tmp_path):
    m = manager(tmp_path, vllm_max_lora_rank=16, vllm_max_model_len=1024)
    m.gpu = False
    rec = ModelRecord(name="tiny", kind="base", source="/models/with space; rm -rf ~")
    cmd = m.command(rec, 8123)
    assert cmd[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert cmd[cmd.index("--model") + 1] == "/models/with space; rm -rf ~"  # one argv item, never a shell string
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    assert "--enable-lora" in cmd and cmd[cmd.index("--max-lora-rank") + 1] == "16"
    assert cmd[cmd.index("--max-model-len") + 1] == "1024"
    assert "--enforce-eager" in cmd and "--gpu-memory-utilization" not in cmd


def test_cpu_without_bf16_serves_in_float32_unless_told_otherwise(tmp_path, monkeypatch):
    import engines.serving.manager as mgr

    rec = ModelRecord(name="tiny", kind="base", source="/m")
    monkeypatch.setattr(mgr, "cpu_has_bf16", lambda: False)
    m = manager(tmp_path)
    m.gpu = False
    cmd = m.command(rec, 1)
    assert cmd[cmd.index("--dtype") + 1] == "float32"
    monkeypatch.setattr(mgr, "cpu_has_bf16", lambda: True)
    assert "--dtype" not in m.command(rec, 1)
    monkeypatch.setattr(mgr, "cpu_has_bf16", lambda: False)
    m2 = manager(tmp_path, vllm_extra_args="--dtype bfloat16")
    m2.gpu = False
    assert m2.command(rec, 1).count("--dtype") == 1


def test_gpu_command_and_environment(tmp_path):
    m = manager(tmp_path, vllm_extra_args="--dtype bfloat16", vllm_gpu_memory_utilization=0.8)
    m.gpu = True
    cmd = m.command(ModelRecord(name="llama", kind="base", source="meta-llama/Llama-3.1-8B-Instruct"), 9000)
    assert "--enforce-eager" not in cmd and cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.8"
    assert cmd[-2:] == ["--dtype", "bfloat16"]
    env = m.environment("1")
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"


def test_hub_token_goes_to_children_only(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    m = manager(tmp_path, huggingface_token="hf_secret", offline_mode=True)
    env = m.environment(None)
    assert env["HF_TOKEN"] == "hf_secret" and env["HF_HUB_OFFLINE"] == "1"
    assert "CUDA_VISIBLE_DEVICES" not in env or env["CUDA_VISIBLE_DEVICES"] == __import__("os").environ.get("CUDA_VISIBLE_DEVICES")
