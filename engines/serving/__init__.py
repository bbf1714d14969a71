"""Local model servers (vLLM OpenAI-compatible) and external endpoints."""

from engines.serving.manager import Endpoint, ServerError, ServerManager, ServerState, has_cuda_gpu

__all__ = ["Endpoint", "ServerError", "ServerManager", "ServerState", "has_cuda_gpu"]
