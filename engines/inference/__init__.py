"""Streaming chat through the openai client, with timings and clear errors."""

from engines.inference.chat import (
    ChatParams,
    ContextTooLong,
    Delta,
    Finished,
    InferenceError,
    RequestTimedOut,
    ServerUnavailable,
    StreamInterrupted,
    UnknownModel,
    stream_chat,
)

__all__ = [
    "ChatParams",
    "ContextTooLong",
    "Delta",
    "Finished",
    "InferenceError",
    "RequestTimedOut",
    "ServerUnavailable",
    "StreamInterrupted",
    "UnknownModel",
    "stream_chat",
]
