"""Local model servers (vLLM OpenAI-compatible), external endpoints, and the on-demand MLflow UI."""

from engines.serving.manager import Endpoint, ServerError, ServerManager, ServerState, has_cuda_gpu
from engines.serving.mlflow_ui import MlflowUI

__all__ = ["Endpoint", "MlflowUI", "ServerError", "ServerManager", "ServerState", "has_cuda_gpu"]
