"""The fleet's routing choice from parsed vLLM `/metrics` (a sample captured from the real CPU server, with its
request gauges rewritten), the FLEET_ENDPOINTS setting, and what a single local server still gets: a plain endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engines.accounts import Actor, PermissionDenied
from engines.models import ModelRecord
from engines.serving import ServerManager
from engines.serving.fleet import EndpointLoad, Fleet, rank
from engines.serving.manager import ServerState, free_port
from engines.serving.metrics import UNREACHABLE, MetricsSnapshot, parse_metrics
from engines.settings import SettingsError, load_settings, parse_fleet

SAMPLE = (Path(__file__).parent / "data" / "vllm_metrics.txt").read_text()
NOW = 1_000_000.0


def metrics(running: float, waiting: float, *, t: float = NOW - 0.5) -> MetricsSnapshot:
    """The real sample with its running / waiting gauges set, parsed as a poll would."""
    text = re.sub(r"^(vllm:num_requests_running\{[^}]*\}) .*$", rf"\1 {running}", SAMPLE, flags=re.M)
    text = re.sub(r"^(vllm:num_requests_waiting\{[^}]*\}) .*$", rf"\1 {waiting}", text, flags=re.M)
    return parse_metrics(text, t=t)


def urls(ranked: list[EndpointLoad]) -> list[str]:
    return [e.url for e in ranked]


def test_the_sample_parses_to_the_gauges_routing_reads():
    snap = metrics(3, 2)
    assert (snap.running, snap.waiting, snap.ok) == (3.0, 2.0, True)


def test_fewest_running_plus_waiting_wins():
    loads = [EndpointLoad("http://a", metrics(5, 0)), EndpointLoad("http://b", metrics(1, 1)),
             EndpointLoad("http://c", metrics(2, 3))]
    assert urls(rank(loads, now=NOW)) == ["http://b", "http://a", "http://c"]


def test_own_requests_sent_after_the_poll_count_until_the_next_poll():
    # b's gauge says 1, but 3 of our requests went there after that poll: a (2 running) is lighter now.
    loads = [EndpointLoad("http://a", metrics(2, 0)), EndpointLoad("http://b", metrics(1, 0), in_flight=3, started_since_poll=3)]
    assert urls(rank(loads, now=NOW)) == ["http://a", "http://b"]
    # Requests already in the poll's numbers are not counted twice.
    loads = [EndpointLoad("http://a", metrics(2, 0)), EndpointLoad("http://b", metrics(1, 0), in_flight=3, started_since_poll=0)]
    assert urls(rank(loads, now=NOW)) == ["http://b", "http://a"]


def test_a_dead_endpoint_is_skipped_but_kept_last():
    dead = MetricsSnapshot(t=NOW - 0.5, error=UNREACHABLE)
    loads = [EndpointLoad("http://dead", dead), EndpointLoad("http://busy", metrics(30, 10)),
             EndpointLoad("http://new")]  # not polled yet: weighed by our own requests, like a healthy one
    assert urls(rank(loads, now=NOW)) == ["http://new", "http://busy", "http://dead"]
    loads = [EndpointLoad("http://up", metrics(1, 0)), EndpointLoad("http://new", in_flight=3)]
    assert urls(rank(loads, now=NOW)) == ["http://up", "http://new"]
    # A request that could not reach a server marks it down even while its last poll still looks good.
    loads = [EndpointLoad("http://a", metrics(0, 0), down_until=NOW + 5), EndpointLoad("http://b", metrics(9, 0))]
    assert urls(rank(loads, now=NOW)) == ["http://b", "http://a"]
    assert urls(rank(loads, now=NOW + 6)) == ["http://a", "http://b"]  # the mark expires


def test_a_server_without_vllm_metrics_is_up_and_weighed_by_our_own_requests():
    router = MetricsSnapshot(t=NOW - 0.5, error="HTTP 404")  # e.g. a router that exports other metrics or none
    loads = [EndpointLoad("http://router", router, in_flight=1), EndpointLoad("http://vllm", metrics(2, 0))]
    assert [e.health(NOW) for e in loads] == ["up", "up"]
    assert urls(rank(loads, now=NOW)) == ["http://router", "http://vllm"]


def test_equal_loads_take_turns():
    fleet = Fleet({"base": ["http://127.0.0.1:1", "http://127.0.0.1:2"]})
    picks = [fleet.targets("base", "base")[0].base_url for _ in range(4)]
    assert picks == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"] * 2
    fleet.close()


def test_requests_in_flight_steer_a_burst_before_any_poll():
    fleet = Fleet({"base": ["http://127.0.0.1:1", "http://127.0.0.1:2"]})
    with fleet.track("http://127.0.0.1:1"), fleet.track("http://127.0.0.1:1"), fleet.track("http://127.0.0.1:2"):
        assert [e.in_flight for e in fleet.loads("base")] == [2, 1]
        assert fleet.targets("base", "base")[0].base_url == "http://127.0.0.1:2/v1"
    assert [e.in_flight for e in fleet.loads("base")] == [0, 0]
    fleet.close()


def test_a_closed_port_is_polled_as_down_and_routed_last():
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fleet = Fleet({"base": [dead]}, managed=lambda base: "http://127.0.0.1:9" if base == "base" else None)
    fleet.poll_once(timeout=0.5)
    views = {v.url: v for v in fleet.view()}
    assert views[dead].health == "down" and views[dead].error == UNREACHABLE
    assert fleet.targets("base", "base")[-1].base_url == f"{dead}/v1"
    fleet.close()


def test_fleet_setting_is_parsed_and_checked():
    assert parse_fleet("a=http://h1:8000/v1/, http://h2:8000; b = https://router") == {
        "a": ["http://h1:8000", "http://h2:8000"], "b": ["https://router"]}
    assert parse_fleet("") == {}
    for bad in ("a=ftp://h", "http://h1:8000", "=http://h"):
        with pytest.raises(SettingsError, match="FLEET_ENDPOINTS"):
            load_settings(fleet_endpoints=bad)


def test_a_single_local_server_still_gets_a_plain_endpoint(tmp_path):
    servers = ServerManager(load_settings(data_dir=tmp_path))
    servers._servers["m"] = ServerState(name="m", source="/x", port=8123, status="ready")
    ep = servers.endpoint_for("m")
    assert ep is not None and ep.router is None and ep.base_url == "http://127.0.0.1:8123/v1"
    assert servers.fleet.view() == [] and servers.fleet._poller is None  # no thread while no base has a fleet


def test_a_fleet_base_gets_a_routed_endpoint_and_only_admins_change_it(tmp_path):
    other = f"http://127.0.0.1:{free_port()}"
    servers = ServerManager(load_settings(data_dir=tmp_path, fleet_endpoints=f"m={other}"))
    servers._servers["m"] = ServerState(name="m", source="/x", port=8123, status="ready")
    servers.registry.add(ModelRecord(name="m-lora", kind="adapter", source="/a", parent="m"))
    try:
        ep = servers.endpoint_for("m-lora")
        assert ep is not None and ep.router is not None and ep.model == "m-lora"
        assert {t.base_url for t in ep.router.targets(ep)} == {"http://127.0.0.1:8123/v1", f"{other}/v1"}
        member, admin = Actor(2, "ana", "member"), Actor(1, "boss", "admin")
        with pytest.raises(PermissionDenied):
            servers.add_fleet_endpoint("m", "http://127.0.0.1:7/v1", actor=member)
        with pytest.raises(PermissionDenied):
            servers.remove_fleet_endpoint("m", other, actor=member)
        assert servers.add_fleet_endpoint("m", "http://127.0.0.1:7/v1", actor=admin) == {"http://127.0.0.1:7": None}
        assert servers.fleet.external("m") == [other, "http://127.0.0.1:7"]
        assert servers.remove_fleet_endpoint("m", other, actor=admin) is True
        assert servers.remove_fleet_endpoint("m", "http://127.0.0.1:7", actor=admin) is True
        assert servers.endpoint_for("m").router is None  # back to the single local server
    finally:
        servers.fleet.close()


def test_the_models_tab_shows_each_endpoint_with_health_and_running_requests():
    from engines.serving.fleet import FleetEndpointView
    from engines.serving.metrics import MetricsHistory
    from studio.models_view import health_html

    views = [FleetEndpointView("m", "http://127.0.0.1:8000", True, "up", 3.0, 1.0, 2, None),
             FleetEndpointView("m", "http://gpu-2:8000", False, "down", None, None, 0, UNREACHABLE)]
    page = health_html("en", {}, MetricsHistory(), fleet=views)
    assert "data-fleet='m' data-url='http://127.0.0.1:8000' data-status='up' data-running='3'" in page
    assert "m · local · up · 3 running · 1 waiting · 2 from this studio" in page
    assert "data-url='http://gpu-2:8000' data-status='down'" in page and "m · http://gpu-2:8000 · down<" in page
    assert "server-pill failed" in page and "unreachable" in page  # the reason is in the pill's title
    assert "응답 없음" in health_html("ko", {}, MetricsHistory(), fleet=views)


def test_when_every_endpoint_is_dead_each_is_tried_once_then_the_error_is_clear():
    import asyncio

    from engines.inference import ChatParams, ServerUnavailable, complete_chat, stream_chat

    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(2)]  # closed ports: connection refused
    fleet = Fleet({"m": dead}, poll=False)
    ep = fleet.endpoint("m", "m")
    messages = [{"role": "user", "content": "hi"}]

    async def stream() -> list:
        return [e async for e in stream_chat(ep, messages, ChatParams(max_tokens=4), timeout=5)]

    with pytest.raises(ServerUnavailable):
        asyncio.run(stream())
    assert {v.url: v.health for v in fleet.view()} == {u: "down" for u in dead}  # both tried, both marked
    with pytest.raises(ServerUnavailable):
        asyncio.run(complete_chat(ep, messages, ChatParams(max_tokens=4), timeout=5))
    assert [e.in_flight for e in fleet.loads("m")] == [0, 0]  # nothing left counted as running


def test_endpoints_an_admin_adds_or_removes_outlive_a_restart(tmp_path):
    configured, added = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    settings = load_settings(data_dir=tmp_path, fleet_endpoints=f"m={configured}")
    admin = Actor(1, "boss", "admin")
    first = ServerManager(settings)
    try:
        first.add_fleet_endpoint("m", f"{added}/v1", actor=admin)
        first.add_fleet_endpoint("n", added, actor=admin)
        assert first.remove_fleet_endpoint("m", configured, actor=admin) is True
    finally:
        first.fleet.close()
    again = ServerManager(settings)  # as after an app restart, FLEET_ENDPOINTS unchanged
    try:
        assert again.fleet.external("m") == [added]  # the configured one stays removed, the added one is back
        assert again.fleet.external("n") == [added]
        assert again.remove_fleet_endpoint("n", added, actor=admin) is True
        again.add_fleet_endpoint("m", configured, actor=admin)  # back in: the setting holds it, the file forgets it
    finally:
        again.fleet.close()
    third = ServerManager(settings)
    try:
        assert third.fleet.external("m") == [configured, added] and third.fleet.external("n") == []
    finally:
        third.fleet.close()
    (tmp_path / "fleet.json").write_text("{not json", encoding="utf-8")  # a damaged file: the setting still applies
    damaged = ServerManager(settings)
    try:
        assert damaged.fleet.external("m") == [configured]
    finally:
        damaged.fleet.close()
