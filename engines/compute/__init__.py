"""Job backends: where workers run. `local` (detached subprocesses on this machine, the default) and `ray` (a Ray
cluster's Jobs REST API, with RAY_ADDRESS); both behind the `JobBackend` protocol in `base.py`.

No module here imports ray: the studio process talks to a cluster over HTTP only.
"""

from __future__ import annotations

from engines.compute.base import ComputeError, JobBackend, JobBundle, JobRef, JobState, Submitted
from engines.compute.local import LocalBackend, process_start_time
from engines.settings import Settings

__all__ = ["ComputeError", "JobBackend", "JobBundle", "JobRef", "JobState", "LocalBackend", "Submitted", "backends_for",
           "process_start_time"]


def backends_for(settings: Settings, *, local_slots: list[str | None] | None = None) -> dict[str, JobBackend]:
    """The job backends of one studio by name: always `local`; `ray` too when RAY_ADDRESS is set."""
    found: dict[str, JobBackend] = {"local": LocalBackend(settings, local_slots)}
    if settings.ray_address:
        from engines.compute.ray_jobs import RayBackend

        found["ray"] = RayBackend(settings)
    return found
