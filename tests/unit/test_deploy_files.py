"""docker-compose.yml and deploy/: what Compose would mount exists, images are pinned, the studio gets GPUs and its
MODEL_n_* settings, and Grafana's provisioning points at the datasource the dashboard uses."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from engines.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
FULL_TAG = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+$")  # registry/name:1.2.3 (no latest, no bare major)


def bind_mounts(service: str) -> list[tuple[Path, str]]:
    out = []
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("./"):
            out.append((ROOT / source, target))
    return out


def test_prometheus_and_grafana_mount_files_that_exist():
    mounts = bind_mounts("prometheus") + bind_mounts("grafana")
    targets = {target for _, target in mounts}
    assert {"/etc/prometheus/prometheus.yml", "/etc/prometheus/secrets", "/etc/grafana/provisioning",
            "/var/lib/grafana/dashboards"} <= targets
    for source, target in mounts:
        assert source.exists(), f"{source} (mounted at {target}) does not exist"
        assert source.is_file() == target.endswith((".yml", ".yaml", ".json")), (source, target)
    # Inside the mounts: the files Prometheus and Grafana are told to read.
    prom = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    studio = next(j for j in prom["scrape_configs"] if j["job_name"] == "studio")
    assert studio["basic_auth"]["password_file"].startswith("/etc/prometheus/secrets/")
    assert (ROOT / "deploy/secrets/.gitignore").is_file()
    provider = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/chat-studio.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))


def test_prometheus_reads_the_targets_file_where_the_studio_writes_it():
    from engines.serving.targets import TARGETS_FILE

    prom = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text(encoding="utf-8"))
    vllm = next(j for j in prom["scrape_configs"] if j["job_name"] == "vllm")
    data_dir = SERVICES["studio"]["environment"]["DATA_DIR"]
    assert "studio-data:/data:ro" in SERVICES["prometheus"]["volumes"] and f"studio-data:{data_dir}" in SERVICES["studio"]["volumes"]
    settings = load_settings(data_dir=Path(data_dir))
    expected = (settings.servers_path / TARGETS_FILE).as_posix()
    assert vllm["file_sd_configs"][0]["files"] == [expected]
    assert SERVICES["prometheus"]["network_mode"] == "service:studio"  # vLLM listens on the container's 127.0.0.1
    static = next(j for j in prom["scrape_configs"] if j["job_name"] == "studio")["static_configs"][0]["targets"]
    assert static == [f"127.0.0.1:{SERVICES['studio']['environment']['PORT']}"]


def test_images_are_pinned_and_the_studio_is_built_from_the_dockerfile_with_gpus():
    for name, service in SERVICES.items():
        if "build" in service:
            assert (ROOT / service["build"]["dockerfile"]).is_file()
            continue
        assert FULL_TAG.match(service["image"]), f"{name}: {service['image']} is not pinned by a full tag"
    studio = SERVICES["studio"]
    devices = studio["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    env = studio["environment"]
    for slot in ("MODEL_1", "MODEL_2"):
        assert {f"{slot}_{k}" for k in ("ENABLED", "PATH", "GPU", "PORT")} <= set(env)
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    command = " ".join(SERVICES["mlflow"]["command"])
    assert "--serve-artifacts" in command and "--artifacts-destination" in command
    mlflow_pin = next(line for line in (ROOT / "requirements/cpu.lock.txt").read_text().splitlines() if line.startswith("mlflow=="))
    assert SERVICES["mlflow"]["image"].endswith(":v" + mlflow_pin.split("==")[1])  # the server speaks the clients' version


def test_grafana_datasource_is_the_one_the_dashboard_uses():
    datasource = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://studio:9090"
    dash = json.loads((ROOT / "deploy/grafana/dashboards/chat-studio.json").read_text(encoding="utf-8"))
    used = {json.dumps(p["datasource"], sort_keys=True) for p in dash["panels"] if "datasource" in p}
    assert used == {json.dumps({"type": "prometheus", "uid": datasource["uid"]}, sort_keys=True)}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
