"""The file_sd list of vLLM servers the studio keeps for Prometheus: ready servers only, atomic, rewritten on change."""

from __future__ import annotations

import json

from engines.serving import ServerManager, ServerState
from engines.serving.targets import scrape_targets, targets_path, write_scrape_targets
from engines.settings import load_settings


def test_ready_servers_are_listed_with_their_model_and_gpu(tmp_path):
    manager = ServerManager(load_settings(data_dir=tmp_path))
    assert scrape_targets(manager) == []
    assert write_scrape_targets(manager) and json.loads(targets_path(manager).read_text()) == []
    assert not write_scrape_targets(manager)  # unchanged: not rewritten
    manager._servers["org/big"] = ServerState(name="org/big", source="", port=8001, gpu="1", status="ready")
    manager._servers["starting"] = ServerState(name="starting", source="", port=8002, status="starting")
    assert write_scrape_targets(manager)
    assert json.loads(targets_path(manager).read_text()) == [
        {"targets": ["127.0.0.1:8001"], "labels": {"model": "org/big", "gpu": "1"}}]
    assert [p.name for p in targets_path(manager).parent.iterdir()] == ["vllm-targets.json"]  # no temp file left
