"""Streaming chat over HTTP to OpenAI-compatible servers, with timings and clear errors; bounded batch generation."""

from engines.inference.batch import Generation, generate_many
from engines.inference.chat import (
    Accepted,
    ChatParams,
    ContextTooLong,
    Delta,
    Finished,
    InferenceError,
    RequestTimedOut,
    ServerUnavailable,
    StreamInterrupted,
    UnknownModel,
    complete_chat,
    stream_chat,
)

__all__ = [
    "Accepted",
    "ChatParams",
    "ContextTooLong",
    "Generation",
    "Delta",
    "Finished",
    "InferenceError",
    "RequestTimedOut",
    "ServerUnavailable",
    "StreamInterrupted",
    "UnknownModel",
    "complete_chat",
    "generate_many",
    "stream_chat",
]
