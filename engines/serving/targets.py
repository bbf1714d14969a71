"""Where Prometheus finds the model servers: a file_sd targets file the studio keeps current.

vLLM servers start on free ports (or MODEL_n_PORT), come and go; Prometheus reads this JSON file
(`file_sd_configs`, re-read on change) instead of a fixed list. One target group per ready server, labelled with the
model it serves. Written atomically and only when it changes. See deploy/prometheus.yml and docs/monitoring.md.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from engines.serving.manager import ServerManager

TARGETS_FILE = Path("prometheus") / "vllm-targets.json"  # under the servers folder (DATA_DIR/servers)


def targets_path(manager: ServerManager) -> Path:
    return manager.settings.servers_path / TARGETS_FILE


def scrape_targets(manager: ServerManager) -> list[dict[str, Any]]:
    """Prometheus file_sd target groups: `[{"targets": ["127.0.0.1:PORT"], "labels": {"model": NAME, "gpu": …}}]`
    for every ready server of `manager`, sorted by model name."""
    groups = []
    for name, st in sorted(manager.status().items()):
        if st.status != "ready":
            continue
        labels = {"model": name}
        if st.gpu:
            labels["gpu"] = str(st.gpu)
        groups.append({"targets": [urlsplit(st.root_url).netloc], "labels": labels})
    return groups


def write_scrape_targets(manager: ServerManager, path: Path | None = None) -> bool:
    """Write the targets file if its content changed (atomically: Prometheus never reads half a file); True when
    written. Never raises on a disk error (monitoring must not stop a server)."""
    path = targets_path(manager) if path is None else path
    text = json.dumps(scrape_targets(manager), indent=2) + "\n"
    try:
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            return False
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".targets-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return True
    except OSError:
        return False
