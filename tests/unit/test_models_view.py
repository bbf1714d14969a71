"""The Models tab's pieces without a server: vLLM /metrics parsing (a sample captured from the real CPU server), rates,
the history, the tab's tables and plots, the studio's own /metrics and /healthz, and the per-server overrides."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engines import monitoring
from engines.models import ModelRecord
from engines.serving import ServerManager, ServerState
from engines.serving.metrics import (
    MetricsHistory,
    MetricsSnapshot,
    fetch_metrics,
    interval_rates,
    parse_metrics,
    poll,
)
from engines.settings import load_settings
from studio.models_view import (
    health_html,
    metric_frames,
    model_rows,
    models_frame,
    servers_api,
    servers_frame,
    start_choices,
    start_options,
    x_span,
    y_limits,
)

SAMPLE = Path(__file__).parent / "data" / "vllm_metrics.txt"  # GET /metrics of vLLM 0.32 (CPU) under load


def snap(t: float, **kw) -> MetricsSnapshot:
    return MetricsSnapshot(t=t, **kw)


def manager_with(tmp_path, *states: ServerState) -> ServerManager:
    """A real manager holding server states without processes (as after an adopted server died)."""
    m = ServerManager(load_settings(data_dir=tmp_path))
    for st in states:
        m._servers[st.name] = st
    return m


def closed_port() -> int:
    from engines.serving.manager import free_port

    return free_port()  # bound and released at once: nothing listens there


# ---- vLLM /metrics ----------------------------------------------------------------------------------------------
def test_the_real_servers_metrics_text_parses_into_a_snapshot():
    s = parse_metrics(SAMPLE.read_text(), t=123.0)
    assert s.ok and s.t == 123.0
    assert (s.running, s.waiting) == (32.0, 0.0)
    assert s.kv_cache_usage == pytest.approx(0.0881542699724518)
    assert (s.generation_tokens, s.prompt_tokens) == (13081.0, 15708.0)
    assert s.ttft_count == 381.0 and s.ttft_sum_s == pytest.approx(16445.637193202972)
    # *_created samples, by-reason / by-source breakdowns and other histograms are not summed in
    assert "vllm:prompt_tokens_by_source_total" in SAMPLE.read_text()


def test_engines_are_summed_kv_cache_averaged_and_the_old_cache_name_read():
    text = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 2.0
vllm:num_requests_running{engine="1",model_name="m"} 3.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.2
vllm:gpu_cache_usage_perc{engine="1",model_name="m"} 0.4
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{engine="0",model_name="m"} 10.0
vllm:generation_tokens_total{engine="1",model_name="m"} 5.0
"""
    s = parse_metrics(text)
    assert s.running == 5.0 and s.generation_tokens == 15.0
    assert s.kv_cache_usage == pytest.approx(0.3)
    assert s.waiting is None and s.ttft_count is None  # not exported: unknown, not zero


def test_the_line_scan_reads_what_the_full_parser_reads_from_the_real_text():
    # parse_metrics scans only the lines it needs; prometheus_client's parser over the whole text is the reference.
    text = SAMPLE.read_text()
    want = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total",
                               "vllm:prompt_tokens_total", "vllm:time_to_first_token_seconds_sum",
                               "vllm:time_to_first_token_seconds_count", "vllm:kv_cache_usage_perc"):
                want[sample.name] = want.get(sample.name, 0.0) + sample.value
    s = parse_metrics(text)
    got = {"vllm:num_requests_running": s.running, "vllm:num_requests_waiting": s.waiting,
           "vllm:generation_tokens_total": s.generation_tokens, "vllm:prompt_tokens_total": s.prompt_tokens,
           "vllm:time_to_first_token_seconds_sum": s.ttft_sum_s, "vllm:time_to_first_token_seconds_count": s.ttft_count,
           "vllm:kv_cache_usage_perc": s.kv_cache_usage}
    assert got == pytest.approx(want) and len(want) == 7


def test_quoted_labels_timestamps_and_look_alike_names_are_read_as_prometheus_means_them():
    text = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="a} b",engine="0"} 2.0 1700000000000
vllm:num_requests_running{model_name="say \\"hi\\" {x}",engine="1"} 3
vllm:num_requests_running_total{engine="0"} 100.0
vllm:num_requests_waiting 4.5
vllm:generation_tokens_created{engine="0"} 1.7e9
vllm:generation_tokens_total{engine="0"} +Inf
"""
    s = parse_metrics(text)
    assert s.running == 5.0 and s.waiting == 4.5  # the look-alike *_total is not the gauge
    assert s.generation_tokens == float("inf")  # *_created is not the counter
    ref = {x.name: x.value for f in text_string_to_metric_families(text) for x in f.samples}
    assert ref["vllm:num_requests_waiting"] == s.waiting


def test_text_that_is_not_prometheus_is_refused_and_text_without_vllm_samples_knows_nothing():
    with pytest.raises(ValueError):
        parse_metrics("<html><body>Not found</body></html>")
    s = parse_metrics("# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n")
    assert s.ok and (s.running, s.waiting, s.generation_tokens, s.kv_cache_usage) == (None, None, None, None)


def test_a_server_that_does_not_answer_is_recorded_as_unreachable_quickly():
    t0 = time.monotonic()
    s = fetch_metrics(f"http://127.0.0.1:{closed_port()}", timeout=0.5)
    assert s.error == "unreachable" and not s.ok and s.running is None
    assert time.monotonic() - t0 < 3


# ---- rates and history ------------------------------------------------------------------------------------------
def test_rates_come_from_counter_and_histogram_deltas():
    a = snap(100.0, generation_tokens=1000, prompt_tokens=500, ttft_sum_s=10.0, ttft_count=20)
    b = snap(102.0, generation_tokens=1100, prompt_tokens=560, ttft_sum_s=10.9, ttft_count=23)
    r = interval_rates(a, b)
    assert r.t == 102.0
    assert r.generation_tps == pytest.approx(50.0) and r.prompt_tps == pytest.approx(30.0)
    assert r.mean_ttft_ms == pytest.approx(300.0)  # 0.9 s over 3 first tokens
    idle = interval_rates(b, snap(104.0, generation_tokens=1100, prompt_tokens=560, ttft_sum_s=10.9, ttft_count=23))
    assert idle.generation_tps == 0.0 and idle.mean_ttft_ms is None  # no request started: no TTFT, not 0 ms


def test_no_rate_across_a_restart_a_failed_poll_or_no_time():
    a = snap(100.0, generation_tokens=1000, ttft_sum_s=1.0, ttft_count=2)
    assert interval_rates(a, snap(102.0, generation_tokens=40, ttft_sum_s=0.1, ttft_count=1)) is None  # counters reset
    assert interval_rates(a, snap(102.0, error="unreachable")) is None
    assert interval_rates(a, snap(100.0, generation_tokens=1001)) is None


def test_history_keeps_the_last_n_per_server_and_is_thread_safe():
    h = MetricsHistory(maxlen=50)
    v0 = h.version()

    def writer(name: str) -> None:
        for i in range(200):
            h.record(name, snap(float(i), generation_tokens=10.0 * i))

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "a", "b")]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(h.snapshots("a")) == 50 and len(h.snapshots("b")) == 50
    assert h.latest("b").t == 199.0 and sorted(h.servers()) == ["a", "b"]
    assert h.version() != v0
    assert [r.generation_tps for r in h.rates("b")] == [10.0] * 49
    h.forget("a")
    assert h.servers() == ["b"] and h.latest("a") is None


def test_poll_records_unreachable_for_a_dead_ready_server_and_skips_the_rest(tmp_path):
    dead = ServerState(name="dead", source="/m", port=closed_port(), status="ready")
    stopped = ServerState(name="stopped", source="/m", port=closed_port(), status="stopped")
    m = manager_with(tmp_path, dead, stopped)
    h = MetricsHistory()
    poll(m, h, timeout=0.5)  # never raises
    assert h.latest("dead").error == "unreachable"
    assert h.latest("stopped") is None
    poll(m, h, timeout=0.5, min_interval=60)  # polled a moment ago: not again
    assert len(h.snapshots("dead")) == 1


# ---- what the tab shows ---------------------------------------------------------------------------------------------
def test_models_table_merges_served_registered_and_catalogue(db):
    from storage import catalog

    catalog.upsert_model("my-adapter", "adapter", path="/runs/my-adapter", parent="base-a", run_id=3)
    catalog.upsert_model("zeta-base", "base", path="/models/zeta")
    served = [ModelRecord(name="base-a", kind="base", source="/models/a"),
              ModelRecord(name="remote", kind="external", source="http://gpu-box:8000/v1")]
    registered = [ModelRecord(name="base-a", kind="base", source="/models/a"),
                  ModelRecord(name="other-adapter", kind="adapter", source="/x", parent="base-a")]
    rows = model_rows(served, registered, catalog.list_models())
    assert [r["name"] for r in rows] == ["base-a", "my-adapter", "other-adapter", "zeta-base", "remote"]
    by = {r["name"]: r for r in rows}
    assert by["base-a"]["served"] and by["remote"]["served"] and not by["my-adapter"]["served"]
    assert by["my-adapter"]["parent"] == "base-a" and by["my-adapter"]["source"] == "/runs/my-adapter"
    assert by["remote"]["kind"] == "external" and by["remote"]["source"] == "http://gpu-box:8000/v1"
    frame = models_frame("en", rows)
    assert frame.shape == (5, 5) and frame.iloc[0, 0] == "base-a"
    assert start_choices("bundled", registered, catalog.list_models()) == ["bundled", "base-a", "zeta-base"]


def test_servers_table_and_health_pills():
    states = {
        "a": ServerState(name="a", source="/m", port=8001, gpu="0", status="ready", pid=42, restarts=[1.0, 2.0]),
        "b": ServerState(name="b", source="/m", port=8002, status="crashed", error="exited with code 1; not restarted"),
    }
    frame = servers_frame("en", states)
    assert frame.shape == (2, 7)
    assert list(frame.iloc[0, [0, 1, 2, 4, 5]]) == ["a", 8001, "0", 42, 2]
    assert frame.iloc[1, 2] == "—" and "not restarted" in frame.iloc[1, 6]
    h = MetricsHistory()
    out = health_html("en", states, h)
    assert "data-server='a' data-status='ready' data-metrics='none'" in out
    assert "data-server='b' data-status='crashed'" in out and "not restarted" in out  # the error is the pill's title
    h.record("a", snap(1.0, running=3, waiting=1, kv_cache_usage=0.25))
    out = health_html("en", states, h)
    assert "data-metrics='ok' data-running='3' data-kv='25'" in out
    h.record("a", snap(3.0, error="unreachable"))
    assert "data-metrics='unreachable'" in health_html("en", states, h)
    assert "data-status='external'" in health_html("en", {}, h, external_urls=["http://x/v1"])
    assert "server-pill stopped" in health_html("en", {}, h, no_serve=True)
    assert "data-status='failed'" in health_html("en", {}, h, pending_error="ModelError: gated\nmore")
    # Where each fine-tune runs: a job on the Ray cluster (its id there), or this machine (its process).
    from types import SimpleNamespace as Run
    jobs = [Run(name="on-ray", compute="ray", remote_job_id="chat-studio-7-on-ray-1a2b", pid=None, status="running"),
            Run(name="here", compute="local", remote_job_id=None, pid=4242, status="running"),
            Run(name="waiting", compute=None, remote_job_id=None, pid=None, status="queued")]
    out = health_html("en", {}, h, jobs=jobs)
    assert "data-job='on-ray' data-compute='ray'" in out and "on-ray · fine-tune running · Ray job chat-studio-7-on-ray-1a2b" in out
    assert "here · fine-tune running · on this machine (PID 4242)" in out
    assert "data-job='waiting' data-compute='local'" in out and "fine-tune queued" in out
    assert "이 컴퓨터에서" in health_html("ko", {}, h, jobs=jobs[1:2])
    assert "No model server" in out  # a job is not a server: that none runs is still said


def test_metric_frames_are_typed_windowed_and_one_line_per_series():
    h = MetricsHistory()
    for i in range(6):
        h.record("a", snap(1000.0 + 2 * i, running=i, waiting=1, kv_cache_usage=0.5, generation_tokens=100.0 * i,
                           ttft_sum_s=0.2 * i, ttft_count=float(i)))
    h.record("a", snap(1012.0, error="unreachable"))
    f = metric_frames("en", h)
    assert set(f) == {"requests", "kv_cache", "tokens_per_s", "ttft_ms"}
    assert len(f["requests"]) == 12 and f["requests"]["series"].nunique() == 2  # running + waiting, the failed poll left out
    assert str(f["requests"]["time"].dtype).startswith("datetime64") and f["requests"]["requests"].dtype == "float64"
    assert list(f["kv_cache"]["kv_cache_pct"]) == [50.0] * 6
    assert list(f["tokens_per_s"]["tokens_per_s"]) == [50.0] * 5
    assert list(f["ttft_ms"]["ttft_ms"]) == pytest.approx([200.0] * 5)
    assert len(metric_frames("en", h, window_s=5)["kv_cache"]) == 2  # only the last seconds
    h.record("b", snap(1010.0, running=1, waiting=0))
    both = metric_frames("en", h)
    assert both["requests"]["series"].nunique() == 4 and both["requests"]["series"].str.startswith("b · ").sum() == 2
    empty = metric_frames("en", MetricsHistory())
    assert all(len(v) == 0 for v in empty.values()) and str(empty["ttft_ms"]["time"].dtype).startswith("datetime64")


def test_lines_break_where_there_is_no_value_instead_of_joining_across_the_gap():
    """A stopped server leaves a hole in time that the lines do not bridge; TTFT exists only for busy intervals."""
    h = MetricsHistory()
    # Requests in the 1st and 4th intervals only (count moves), none in the 2nd, 3rd and 5th.
    counts = [0, 1, 1, 1, 2, 2]
    for i, c in enumerate(counts):
        h.record("a", snap(1000.0 + 2 * i, running=0, waiting=0, kv_cache_usage=0.1, generation_tokens=10.0 * i,
                           ttft_sum_s=0.1 * c, ttft_count=float(c)))
    for i in range(2):  # the server stopped for a minute, then served again
        h.record("a", snap(1070.0 + 2 * i, running=0, waiting=0, kv_cache_usage=0.1, generation_tokens=100.0,
                           ttft_sum_s=0.2, ttft_count=2.0))
    f = metric_frames("en", h)
    # TTFT only where there were requests (the plot draws dots: nothing joins the two busy intervals)
    assert list(f["ttft_ms"]["ttft_ms"]) == pytest.approx([100.0, 100.0])
    kv = f["kv_cache"]
    assert len(kv) == 9 and kv["kv_cache_pct"].isna().sum() == 1  # 8 points and one break in the minute-long hole
    hole = kv[kv["kv_cache_pct"].isna()]["time"].iloc[0]
    assert pd.Timestamp(1010.0, unit="s") < hole < pd.Timestamp(1070.0, unit="s")
    assert y_limits(f)["ttft_ms"] == [0.0, 125.0]
    assert x_span(f) == [1000.0, 1072.0]  # the dots share the lines' time axis (epoch seconds)
    assert x_span(metric_frames("en", MetricsHistory())) is None
    idle = MetricsHistory()
    for i in range(3):
        idle.record("a", snap(1000.0 + 2 * i, running=0, waiting=0, ttft_sum_s=0.0, ttft_count=0.0))
    assert len(metric_frames("en", idle)["ttft_ms"]) == 0  # no request at all: nothing to plot
    gone = MetricsHistory()  # a series with no value at all (NaN throughout) is left out, not drawn as breaks
    gone.record("a", snap(1000.0, running=0, waiting=0, kv_cache_usage=float("nan")))
    gone.record("a", snap(1002.0, running=0, waiting=0, kv_cache_usage=float("nan")))
    assert len(metric_frames("en", gone)["kv_cache"]) == 0


def test_start_form_is_checked_and_blank_fields_keep_the_settings():
    ok, errors = start_options("en", "", None, 1024, 0.8)
    assert errors == {} and ok.port is None and ok.gpu is None and ok.max_model_len == 1024 and ok.gpu_memory_utilization == 0.8
    ok, _ = start_options("en", " 0,1 ", 8123.0, "", None)
    assert ok.gpu == "0,1" and ok.port == 8123 and ok.max_model_len is None
    bad, errors = start_options("en", "cuda:0", 80, 64, 1.5)
    assert bad is None and set(errors) == {"gpu", "port", "max_model_len", "gpu_memory_utilization"}


def test_servers_api_carries_state_and_last_rates():
    st = ServerState(name="a", source="/m", port=1, status="ready", max_model_len=512)
    h = MetricsHistory()
    h.record("a", snap(0.0, generation_tokens=0, running=1))
    h.record("a", snap(2.0, generation_tokens=40, running=2))
    [row] = servers_api({"a": st}, h)
    assert row["max_model_len"] == 512 and row["metrics"]["running"] == 2 and row["metrics"]["generation_tokens_per_s"] == 20.0


# ---- per-server overrides in the server command -----------------------------------------------------------------------
def test_overrides_change_only_their_flags(tmp_path):
    m = ServerManager(load_settings(data_dir=tmp_path, vllm_max_model_len=2048, vllm_gpu_memory_utilization=0.9))
    rec = ModelRecord(name="tiny", kind="base", source="/m")
    m.gpu = True
    plain = m.command(rec, 8000)
    assert plain[plain.index("--max-model-len") + 1] == "2048" and plain[plain.index("--gpu-memory-utilization") + 1] == "0.9"
    cmd = m.command(rec, 8000, max_model_len=512, gpu_memory_utilization=0.5)
    assert cmd[cmd.index("--max-model-len") + 1] == "512" and cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.5"
    assert [a for a in cmd if a not in ("512", "0.5")] == [a for a in plain if a not in ("2048", "0.9")]
    m.gpu = False
    assert "--gpu-memory-utilization" not in m.command(rec, 8000, gpu_memory_utilization=0.5)  # CPU builds have no such flag


# ---- the studio's own metrics and health --------------------------------------------------------------------------------
def sample_value(text: bytes, name: str, **labels: str) -> float:
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise KeyError(name)


def test_record_chat_and_errors_show_in_metrics_text():
    before = monitoring.metrics_text()
    monitoring.record_chat(250.0, 40)
    monitoring.record_chat(None, 0)  # an answer that never produced a token
    monitoring.record_error("ServerUnavailable")
    monitoring.record_error("server unavailable!")
    after = monitoring.metrics_text()
    assert sample_value(after, "studio_chat_messages_total") - sample_value(before, "studio_chat_messages_total") == 2
    assert sample_value(after, "studio_completion_tokens_total") - sample_value(before, "studio_completion_tokens_total") == 40
    assert sample_value(after, "studio_ttft_seconds_count") - sample_value(before, "studio_ttft_seconds_count") == 1
    assert sample_value(after, "studio_ttft_seconds_bucket", le="0.25") - sample_value(before, "studio_ttft_seconds_bucket", le="0.25") == 1
    assert sample_value(after, "studio_errors_total", kind="serverunavailable") >= 1
    assert sample_value(after, "studio_errors_total", kind="server_unavailable") >= 1
    assert b"vllm" not in after  # its own registry: nothing from the process-wide one


def test_error_kinds_are_bounded(monkeypatch):
    monkeypatch.setattr(monitoring, "_kinds", set())
    monkeypatch.setattr(monitoring, "MAX_ERROR_KINDS", 3)
    kinds = [monitoring.error_kind(f"kind {i}") for i in range(5)]
    assert kinds == ["kind_0", "kind_1", "kind_2", "other", "other"]
    assert monitoring.error_kind("kind 1") == "kind_1" and monitoring.error_kind("") == "other"


def test_gauges_count_runs_evaluations_and_servers_by_status(db, tmp_path):
    from storage import evals, runs

    for i, status in enumerate(["running", "completed", "completed", "failed"]):
        r = runs.create_run(name=f"r{i}", base_model="b", dataset="d", method="lora", spec={}, run_dir=f"/tmp/r{i}")
        runs.update_run(r.id, status=status)
    evals.create_eval(name="e", models=["a", "b"], judge=None, source="pasted", params={}, examples=[])
    m = manager_with(tmp_path, ServerState(name="a", source="/m", port=1, status="ready"),
                     ServerState(name="b", source="/m", port=2, status="crashed"))
    monitoring.track_servers(m)
    try:
        text = monitoring.metrics_text()
    finally:
        monitoring.track_servers(None)
    assert sample_value(text, "studio_training_runs", status="completed") == 2
    assert sample_value(text, "studio_training_runs", status="running") == 1
    assert sample_value(text, "studio_training_runs", status="interrupted") == 0  # every status is there, 0 or not
    assert sample_value(text, "studio_eval_runs", status="queued") == 1
    assert sample_value(text, "studio_model_servers", status="ready") == 1
    assert sample_value(text, "studio_model_servers", status="crashed") == 1
    assert sample_value(monitoring.metrics_text(), "studio_model_servers", status="ready") == 0


def test_metrics_and_healthz_routes_on_a_bare_fastapi_app(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    m = manager_with(tmp_path, ServerState(name="a", source="/m", port=1, status="ready"))
    db_up = {"ok": True}
    app = FastAPI()
    monitoring.install_routes(app, lambda: monitoring.health_report(m, db_check=lambda: db_up["ok"]))
    client = TestClient(app)

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE studio_chat_messages_total counter" in r.text

    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["db"] is True and r.json()["servers"] == {"ready": 1}
    m._servers["b"] = ServerState(name="b", source="/m", port=2, status="failed")
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "degraded" and r.json()["servers"] == {"ready": 1, "failed": 1}
    db_up["ok"] = False
    r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "degraded" and r.json()["db"] is False

    def broken() -> dict:
        raise RuntimeError("boom")

    app2 = FastAPI()
    monitoring.install_routes(app2, broken)
    r = TestClient(app2).get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "degraded"


def test_metrics_ask_for_the_studio_password_when_it_has_one(tmp_path):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    app = FastAPI()
    monitoring.install_routes(app, lambda: {"db": True}, auth=("admin", "s3cret"))
    client = TestClient(app)
    r = client.get("/metrics")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert "studio_" not in r.text
    assert client.get("/metrics", auth=("admin", "wrong")).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Basic %%%"}).status_code == 401
    r = client.get("/metrics", auth=("admin", "s3cret"))
    assert r.status_code == 200 and "studio_chat_messages_total" in r.text
    assert client.get("/healthz").status_code == 200  # container checks need no password


def test_database_check_is_real(db):
    assert monitoring.database_ok() is True
    assert monitoring.health_report(None)["status"] == "ok"


def test_y_limits_have_a_floor_and_follow_the_peak() -> None:
    empty = {"requests": pd.DataFrame({"requests": []}), "tokens_per_s": pd.DataFrame({"tokens_per_s": []}),
             "ttft_ms": pd.DataFrame({"ttft_ms": []})}
    assert y_limits(empty) == {"requests": [0.0, 2.0], "tokens_per_s": [0.0, 10.0], "ttft_ms": [0.0, 50.0]}
    busy = {"requests": pd.DataFrame({"requests": [0.0, 7.0]}), "tokens_per_s": pd.DataFrame({"tokens_per_s": [30.0, 80.0]}),
            "ttft_ms": pd.DataFrame({"ttft_ms": [400.0]})}
    assert y_limits(busy) == {"requests": [0.0, 9.0], "tokens_per_s": [0.0, 100.0], "ttft_ms": [0.0, 500.0]}


def test_the_badge_digest_moves_when_a_server_changes_and_only_then(tmp_path):
    """The page fetches this digest every 3 s and starts Gradio's poll_status only when it moved."""
    from engines.services import Services
    from studio.chat_tab import status_signature

    m = manager_with(tmp_path)
    services = Services(settings=m.settings, servers=m)
    empty = status_signature(services)
    assert empty == status_signature(services) and len(empty) == 16
    m._servers["tiny"] = ServerState(name="tiny", source="/m", port=closed_port(), status="starting")
    starting = status_signature(services)
    assert starting != empty
    assert status_signature(services) == starting  # nothing changed: the page asks Gradio for nothing
    m._servers["tiny"].status = "failed"
    assert status_signature(services) not in (empty, starting)
