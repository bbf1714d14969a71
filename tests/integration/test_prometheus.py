"""The shipped monitoring stack against the real thing: Debian's Prometheus runs deploy/prometheus.yml (rewritten only
where it must point at this session: the test studios' ports, a password file, the vLLM targets file), scrapes a
studio with accounts through HTTP Basic, a studio without, and the session's real CPU vLLM server (found through the
file_sd list the studio's ServerManager writes), and the series come back through Prometheus's HTTP API after a chat.
The Grafana dashboard is checked against the metric names the studio and vLLM really export."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from engines.serving.targets import scrape_targets, write_scrape_targets

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "chat-studio.json"
METRIC_NAME = re.compile(r"(?<![\w:])(?:studio_[a-z0-9_]+|vllm:[a-z0-9_:]+)")
ADMIN, ADMIN_PASSWORD = "boss", "boss-password-1"  # tests/conftest.py's api_studio

@pytest.fixture
def prometheus_installed() -> None:
    """Debian's prometheus package is part of the test install (bash scripts/install.sh --dev): missing is a failure."""
    missing = [b for b in ("prometheus", "promtool") if shutil.which(b) is None]
    assert not missing, f"{missing} not found: run bash scripts/install.sh --dev (it installs Debian's prometheus)"


needs_prometheus = pytest.mark.usefixtures("prometheus_installed")


def dashboard_queries() -> list[str]:
    """Every PromQL text of the dashboard: panel targets and template variable queries."""
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    out = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        out.append(q["query"] if isinstance(q, dict) else q)
    return out


def exported_names(text: str) -> set[str]:
    """Series names a /metrics text can produce: each sample's name, and for families that have no sample yet (a
    labelled counter before its first increment) the names their type implies."""
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names


def root_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@needs_prometheus
def test_promtool_accepts_the_shipped_config():
    out = subprocess.run(["promtool", "check", "config", str(SHIPPED)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr


def test_every_dashboard_metric_is_exported_by_the_studio_or_vllm(api_studio, endpoint):
    # A chat first: the studio's histogram and counters then have samples, vLLM's request counters too.
    r = httpx.post(api_studio.url + "v1/chat/completions", headers={"Authorization": f"Bearer {api_studio.member_key}"},
                   json={"model": api_studio.model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8},
                   timeout=120)
    assert r.status_code == 200, r.text
    studio = httpx.get(api_studio.url + "metrics", auth=(ADMIN, ADMIN_PASSWORD), timeout=30)
    vllm = httpx.get(root_of(endpoint.base_url) + "/metrics", timeout=30)
    assert studio.status_code == 200 and vllm.status_code == 200
    exported = exported_names(studio.text) | exported_names(vllm.text)
    used = {name for q in dashboard_queries() for name in METRIC_NAME.findall(q)}
    # The panels the deployment promises: requests, KV cache, TTFT, tokens/s, running/waiting; chats, errors, runs.
    assert {"vllm:request_success_total", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
            "vllm:generation_tokens_total", "vllm:num_requests_running", "vllm:num_requests_waiting",
            "studio_chat_messages_total", "studio_errors_total", "studio_training_runs"} <= used
    missing = sorted(used - exported)
    assert not missing, f"dashboard panels on metrics nobody exports: {missing}"


@pytest.fixture
def prometheus(tmp_path, api_studio, studio_url, endpoint, server_manager):
    """Debian's prometheus on a free loopback port with the shipped config pointed at this session; yields its URL."""
    from tests.conftest import free_port

    config = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    # Scrapes every 2 s, each allowed 2 s: a 2-core machine busy with other tests answers /metrics slowly at times.
    config["global"].update(scrape_interval="2s", scrape_timeout="2s", evaluation_interval="2s")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    password = tmp_path / "studio-metrics-password"
    password.write_text(ADMIN_PASSWORD)
    studio = jobs["studio"]
    studio["basic_auth"] = {"username": ADMIN, "password_file": str(password)}
    studio["static_configs"][0]["targets"] = [urlsplit(api_studio.url).netloc]
    # The session's studio has no accounts: the same job, header and all, must still be answered.
    open_studio = json.loads(json.dumps(studio)) | {"job_name": "studio-without-accounts"}
    open_studio["static_configs"][0]["targets"] = [urlsplit(studio_url).netloc]
    config["scrape_configs"].append(open_studio)
    # The vLLM job reads the file_sd list exactly as the studio writes it (its ServerManager's own writer).
    targets = tmp_path / "vllm-targets.json"
    assert write_scrape_targets(server_manager, targets)
    assert urlsplit(endpoint.base_url).netloc in {t for g in scrape_targets(server_manager) for t in g["targets"]}
    jobs["vllm"]["file_sd_configs"][0]["files"] = [str(targets)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    check = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr

    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={path}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp_path)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-3000:]
            try:
                if httpx.get(url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise AssertionError("prometheus did not get ready: " + log_path.read_text()[-3000:])
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def query(url: str, promql: str) -> list[dict]:
    r = httpx.get(url + "/api/v1/query", params={"query": promql}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", (promql, body)
    return body["data"]["result"]


def value_when(url: str, promql: str, ok, timeout: float = 120.0) -> list[dict]:
    """Poll `promql` until `ok(result)` holds (scrapes come every 2 s); the last result otherwise fails."""
    deadline = time.monotonic() + timeout
    result: list[dict] = []
    while time.monotonic() < deadline:
        result = query(url, promql)
        if result and ok(result):
            return result
        time.sleep(0.5)
    raise AssertionError(f"{promql}: {result}")


@needs_prometheus
def test_prometheus_scrapes_the_studio_and_vllm_with_the_shipped_config(prometheus, api_studio, endpoint):
    def number(result: list[dict]) -> float:
        return sum(float(s["value"][1]) for s in result)

    # Every target is up: the studio with accounts (HTTP Basic), the one without, the vLLM server from the file_sd list.
    for job in ("studio", "studio-without-accounts", "vllm"):
        value_when(prometheus, f'up{{job="{job}"}}', lambda r: number(r) == len(r) >= 1)
    model_label = value_when(prometheus, 'up{job="vllm"}', lambda r: True)[0]["metric"]["model"]
    assert model_label == endpoint.model

    before = number(query(prometheus, 'studio_chat_messages_total{job="studio"}') or [{"value": [0, "0"]}])
    tokens_before = number(query(prometheus, 'vllm:generation_tokens_total{job="vllm"}') or [{"value": [0, "0"]}])
    r = httpx.post(api_studio.url + "v1/chat/completions", headers={"Authorization": f"Bearer {api_studio.member_key}"},
                   json={"model": api_studio.model, "messages": [{"role": "user", "content": "Name a colour."}],
                         "max_tokens": 8}, timeout=120)
    assert r.status_code == 200, r.text
    answered = r.json()["usage"]["completion_tokens"]

    # The studio's series, read back through Prometheus's HTTP API.
    value_when(prometheus, 'studio_chat_messages_total{job="studio"}', lambda res: number(res) >= before + 1)
    value_when(prometheus, 'studio_ttft_seconds_count{job="studio"}', lambda res: number(res) >= 1)
    runs = value_when(prometheus, 'studio_training_runs{job="studio"}', lambda res: len(res) >= 6)
    assert {s["metric"]["status"] for s in runs} >= {"queued", "running", "completed", "failed", "cancelled", "interrupted"}
    value_when(prometheus, 'studio_model_servers{job="studio-without-accounts"}', lambda res: len(res) >= 5)
    # vLLM's series: the chat's tokens were generated on the session's server (the studio chats through it).
    value_when(prometheus, 'vllm:generation_tokens_total{job="vllm"}', lambda res: number(res) >= tokens_before + answered)
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_count"):
        series = value_when(prometheus, f'{name}{{job="vllm"}}', lambda res: True)
        assert series[0]["metric"]["model"] == endpoint.model

    # Every dashboard query is valid PromQL on this Prometheus and, past the rate window, the panels have data.
    for promql in (q.replace("$__rate_interval", "1m").replace("$model", ".*") for q in dashboard_queries()):
        if promql.startswith("label_values("):
            name, label = re.match(r"label_values\((\S+), (\w+)\)", promql).groups()
            assert endpoint.model in {s["metric"].get(label) for s in query(prometheus, name)}
            continue
        query(prometheus, promql)
