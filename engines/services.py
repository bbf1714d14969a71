"""The long-lived engine objects one studio process shares: what every tab builder and API route is given."""

from __future__ import annotations

from dataclasses import dataclass

from engines.evaluation.runner import EvalManager
from engines.serving import MlflowUI, ServerManager
from engines.settings import Settings
from engines.training import JobManager


@dataclass
class Services:
    settings: Settings
    servers: ServerManager
    jobs: JobManager | None = None
    mlflow_ui: MlflowUI | None = None
    evals: EvalManager | None = None
    no_serve: bool = False  # the app manages no model servers (--no-serve)
