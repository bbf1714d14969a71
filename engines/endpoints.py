"""Where a request goes: `Endpoint` (an OpenAI base URL and a model name) and the `Router` a fleet endpoint carries.

What serving hands out and inference, evaluation and synthetic data use: a home of its own, so none of them imports
another for it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Endpoint:
    """Where to send OpenAI requests for one model name. With a `router` (a base served by a fleet), `base_url` is
    only the best endpoint when it was handed out: each request asks the router again (engines/serving/fleet.py)."""

    base_url: str  # ends with /v1
    model: str
    api_key: str = field(default="EMPTY", repr=False)
    router: Router | None = field(default=None, repr=False, compare=False)


class Router(Protocol):
    """Picks, for each request, the endpoints of a fleet in the order to try them."""

    def targets(self, endpoint: Endpoint) -> list[Endpoint]:
        """Plain endpoints (no router), best first; a request that fails before any text moves on to the next."""
        ...

    def track(self, target: Endpoint) -> AbstractContextManager[None]:
        """Counts a request in flight on `target` while it runs."""
        ...

    def failed(self, target: Endpoint, reason: str, *, down: bool) -> None:
        """A request could not start there; `down`: the server is unreachable (skipped until a poll finds it again)."""
        ...
