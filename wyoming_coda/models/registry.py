"""The engine registry: for each profile (`kyutai`, `cpu`, ...) the engine that serves each role
(stt, tts, moshi), with what it is called, where its models come from and how it loads.

An engine is one module (its class, on the role's protocol in `engines.protocols`) plus one
registration here or in an `EngineRegistry` a caller builds; the model store, the Wyoming
`info` and the server only read these descriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ..config import VoiceConfig
from ..engines.batching import StepObserver
from ..engines.protocols import Engine

Role = Literal["stt", "tts", "moshi"]
ROLES: tuple[Role, ...] = get_args(Role)


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: the model to load and where, and the engine's rows and thread."""

    source: str  # a Hugging Face repo id, a local directory or a model name
    config: VoiceConfig
    device: str  # "cuda" or "cpu"
    dtype: Any  # the torch dtype of the device
    executor: ThreadPoolExecutor
    on_step: StepObserver | None
    checkpoint: Any = None  # moshi's CheckpointInfo, for engines that load a Kyutai checkpoint
    hints: Callable[[], str | None] | None = None  # words to expect (the home's), for STT that takes a prompt


@dataclass(frozen=True)
class Attribution:
    name: str
    url: str


@dataclass(frozen=True)
class EngineSpec:
    """One engine kind."""

    role: Role
    name: str  # what Home Assistant shows: "Kyutai STT", "Whisper", ...
    load: Callable[[LoadRequest], Engine]  # runs in the loading thread
    languages: Callable[[str], list[str]]  # before loading, from the source's name
    attribution: Attribution | None = None  # the engine's; None: the source's Hugging Face repo (Kyutai)
    checkpoint: bool = True  # loads a Kyutai checkpoint: its weights are sized against the memory budget
    threads: Callable[[VoiceConfig], int] = lambda _config: 1  # threads of its executor


class UnknownEngineError(LookupError):
    """No engine is registered for a profile and role."""


class EngineRegistry:
    """Engines by profile and role."""

    def __init__(self) -> None:
        self._specs: dict[tuple[str, Role], EngineSpec] = {}

    def register(self, profile: str, spec: EngineSpec) -> None:
        """Serve `spec.role` with `spec` in `profile` (replacing an earlier registration)."""
        self._specs[(profile, spec.role)] = spec

    def spec(self, profile: str, role: Role) -> EngineSpec:
        try:
            return self._specs[(profile, role)]
        except KeyError:
            raise UnknownEngineError(f"no {role} engine is registered for the {profile} profile") from None

    def copy(self) -> EngineRegistry:
        """A registry that starts with these engines (add or replace some without touching this one)."""
        registry = EngineRegistry()
        registry._specs = dict(self._specs)
        return registry
