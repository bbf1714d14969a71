"""What this machine can train on, found without importing torch (nvidia-smi and /proc)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    memory_gb: float


@dataclass(frozen=True)
class Hardware:
    cpus: int
    ram_total_gb: float
    ram_available_gb: float
    gpus: list[Gpu] = field(default_factory=list)

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def gpu_memory_gb(self) -> float:
        return min((g.memory_gb for g in self.gpus), default=0.0)


def _meminfo() -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                out[key] = float(rest.split()[0]) / 1024 / 1024  # kB -> GiB
    except (OSError, ValueError, IndexError):
        pass
    return out


def list_gpus() -> list[Gpu]:
    smi = shutil.which("nvidia-smi")
    if not smi or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return []
    try:
        res = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in res.stdout.splitlines() if res.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[0].isdigit():
            try:
                gpus.append(Gpu(int(parts[0]), parts[1], float(parts[2]) / 1024))
            except ValueError:
                continue
    return gpus


def detect() -> Hardware:
    mem = _meminfo()
    return Hardware(
        cpus=os.cpu_count() or 1,
        ram_total_gb=mem.get("MemTotal", 0.0),
        ram_available_gb=mem.get("MemAvailable", mem.get("MemTotal", 0.0)),
        gpus=list_gpus(),
    )
