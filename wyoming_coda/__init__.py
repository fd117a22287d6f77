"""Coda Voice: Kyutai speech + LLM voice assistant server for Home Assistant (Wyoming).

The spec's Python API: `VoiceManager`, `VoiceConfig` and its sections (`MoshiConfig`,
`ExternalLLMConfig`, ...). The manager is imported on first use, so the command line starts
without loading torch.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("wyoming-coda")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

_CONFIG_NAMES = (
    "AudioConfig", "ExternalLLMConfig", "IntegrationConfig", "MoshiConfig", "PersonalityConfig",
    "ServerConfig", "STTConfig", "TTSConfig", "VoiceConfig",
)
_MANAGER_NAMES = ("VoiceManager", "VoiceResponse", "VoiceStreamChunk")
__all__ = [*_CONFIG_NAMES, *_MANAGER_NAMES, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _CONFIG_NAMES:
        from . import config

        return getattr(config, name)
    if name in _MANAGER_NAMES:
        from .voiceapi import manager

        return getattr(manager, name)
    raise AttributeError(f"module 'wyoming_coda' has no attribute {name!r}")
