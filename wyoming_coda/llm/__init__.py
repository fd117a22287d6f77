"""LLM backends: Ollama (default), any OpenAI-compatible server, and embedded llama.cpp."""

from __future__ import annotations

from ..config import ExternalLLMConfig
from .base import DisabledBackend, LLMBackend, LLMChunk, LLMError, ToolCall

__all__ = ["LLMBackend", "LLMChunk", "LLMError", "ToolCall", "create_backend"]


def create_backend(config: ExternalLLMConfig, enabled: bool = True) -> LLMBackend:
    """The backend named by `config.provider` (none when the LLM is disabled)."""
    if not enabled:
        return DisabledBackend()
    if config.provider == "ollama":
        from .ollama import OllamaBackend

        return OllamaBackend(config)
    if config.provider == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(config.url, config.model, timeout=config.timeout, temperature=config.temperature)
    from .llamacpp import LlamaCppBackend

    return LlamaCppBackend(config)
