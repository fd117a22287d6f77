"""Configuration: the spec's `VoiceConfig`, its YAML form and the voluptuous schema behind both.

A YAML file has the spec's sections (`voice_processing`, `audio`, `integration`) plus a
`server` section; command-line flags override the file (see `__main__`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import voluptuous as vol
import yaml

MODES = ("moshi_only", "hybrid", "adaptive")
DEVICES = ("auto", "cuda", "cpu")
LLM_PROVIDERS = ("ollama", "openai", "llamacpp")
LOG_FORMATS = ("text", "json")

DEFAULT_MOSHI_MODEL = "kyutai/moshika-pytorch-bf16"
DEFAULT_STT_MODEL = "kyutai/stt-1b-en_fr"
DEFAULT_TTS_MODEL = "kyutai/tts-1.6b-en_fr"
DEFAULT_TTS_VOICES = "kyutai/tts-voices"
DEFAULT_TTS_VOICE = "expresso/ex03-ex01_happy_001_channel1_334s.wav"
DEFAULT_LLM_URL = "http://127.0.0.1:11434"
DEFAULT_LLM_MODEL = "qwen3:8b"
DEFAULT_URI = "tcp://0.0.0.0:10300"
DEFAULT_HTTP_PORT = 10301
DEFAULT_ZEROCONF_NAME = "coda-voice"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key."""


def parse_size(value: str) -> int:
    """Parse a memory size such as "8GB" or "512MiB" into bytes (binary units)."""
    match = _SIZE_RE.match(str(value))
    if match is None:
        raise vol.Invalid(f"expected a size such as '8GB' or '512MB', got {value!r}")
    return int(float(match.group(1)) * _SIZE_FACTORS[match.group(2)[0].lower()])


def _size(value: Any) -> str | None:
    """A memory size such as "8GB", or None for no budget."""
    if value is None:
        return None
    parse_size(value)
    return str(value)


def _uri(value: Any) -> str:
    text = str(value)
    if re.match(r"^tcp://[^:/]+:\d+$", text) or re.match(r"^unix://.+$", text):
        return text
    raise vol.Invalid(f"expected tcp://HOST:PORT or unix://PATH, got {text!r}")


def _url(value: Any) -> str:
    """An http(s) URL."""
    text = str(value)
    if re.match(r"^https?://[^/\s]+", text):
        return text
    raise vol.Invalid(f"expected an http:// or https:// URL, got {text!r}")


_PORT = vol.All(int, vol.Range(min=0, max=65535))
_PROBABILITY = vol.All(vol.Coerce(float), vol.Range(min=0.0, max=1.0))


@dataclass
class MoshiConfig:
    """Moshi speech-to-speech model."""

    model_path: str = DEFAULT_MOSHI_MODEL
    vram_allocation: str | None = "8GB"
    target_latency_ms: int = 200
    external_llm_enabled: bool = True
    duplex: bool = False  # serve duplex sessions (/api/duplex) in hybrid mode too
    batch_size: int = 4


@dataclass
class ExternalLLMConfig:
    """The reasoning LLM (Ollama by default)."""

    provider: str = "ollama"
    url: str = DEFAULT_LLM_URL
    model: str = DEFAULT_LLM_MODEL
    vram_allocation: str | None = None
    parallel_processing: bool = True
    timeout: float = 60.0
    keep_alive: str = "-1"
    think: bool = False
    threads: int | None = None
    context_size: int = 4096
    max_tool_iterations: int = 10


@dataclass
class STTConfig:
    """Kyutai streaming speech-to-text."""

    model: str = DEFAULT_STT_MODEL
    batch_size: int = 8
    vram_allocation: str | None = None


@dataclass
class TTSConfig:
    """Kyutai streaming text-to-speech and its voice repository."""

    model: str = DEFAULT_TTS_MODEL
    voices: str = DEFAULT_TTS_VOICES
    voice: str = DEFAULT_TTS_VOICE
    batch_size: int = 8
    vram_allocation: str | None = None


@dataclass
class AudioConfig:
    """The spec's `audio` section."""

    sample_rate: int = 24000
    channels: int = 1
    format: str = "wav"
    vad_enabled: bool = True
    vad_threshold: float = 0.5
    silence_duration_ms: int = 1000
    noise_reduction: bool = True
    echo_cancellation: bool = True
    auto_gain_control: bool = True


@dataclass
class IntegrationConfig:
    """The spec's `integration` section."""

    memory_enabled: bool = True
    personality_enabled: bool = True
    tools_enabled: bool = True
    websocket_events: bool = True
    memory_context_limit: int = 5
    personality_adaptation: bool = True
    tool_calling_during_speech: bool = True
    conversation_timeout: float = 300.0  # seconds without a turn before a handle conversation ends


@dataclass
class PersonalityConfig:
    """The assistant's default personality profile."""

    name: str = "Coda"
    style: str = "a helpful voice assistant for the home"
    verbosity: str = "brief"
    tone: str = "friendly"
    extra_prompt: str = ""


@dataclass
class ServerConfig:
    """Where and how the server listens."""

    uri: str = DEFAULT_URI
    zeroconf: str | None = None
    zeroconf_host: str | None = None
    data_dir: str = "data"
    http_host: str = "0.0.0.0"
    http_port: int = DEFAULT_HTTP_PORT
    http_token: str | None = None
    debug: bool = False
    log_format: str = "text"


@dataclass
class VoiceConfig:
    """Everything the voice system needs; mirrors the YAML layout."""

    mode: str = "hybrid"
    device: str = "auto"
    moshi: MoshiConfig = field(default_factory=MoshiConfig)
    external_llm: ExternalLLMConfig = field(default_factory=ExternalLLMConfig)
    stt: STTConfig = field(default_factory=STTConfig)
    tts: TTSConfig = field(default_factory=TTSConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    integration: IntegrationConfig = field(default_factory=IntegrationConfig)
    personality: PersonalityConfig = field(default_factory=PersonalityConfig)
    server: ServerConfig = field(default_factory=ServerConfig)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"voice_processing.mode: must be one of {', '.join(MODES)}")
        if self.device not in DEVICES:
            raise ConfigError(f"voice_processing.device: must be one of {', '.join(DEVICES)}")


_BATCH = vol.All(int, vol.Range(min=1, max=256))
_MOSHI_SCHEMA = vol.Schema({
    vol.Optional("model_path"): str,
    vol.Optional("vram_allocation"): _size,
    vol.Optional("target_latency_ms"): vol.All(int, vol.Range(min=1)),
    vol.Optional("external_llm_enabled"): bool,
    vol.Optional("duplex"): bool,
    vol.Optional("batch_size"): _BATCH,
})
_LLM_SCHEMA = vol.Schema({
    vol.Optional("provider"): vol.In(LLM_PROVIDERS),
    vol.Optional("url"): _url,
    vol.Optional("model"): str,
    vol.Optional("vram_allocation"): _size,
    vol.Optional("parallel_processing"): bool,
    vol.Optional("timeout"): vol.All(vol.Coerce(float), vol.Range(min=1, max=600)),
    vol.Optional("keep_alive"): vol.Coerce(str),
    vol.Optional("think"): bool,
    vol.Optional("threads"): vol.Any(None, vol.All(int, vol.Range(min=1, max=256))),
    vol.Optional("context_size"): vol.All(int, vol.Range(min=512, max=1 << 20)),
    vol.Optional("max_tool_iterations"): vol.All(int, vol.Range(min=1, max=50)),
})
_STT_SCHEMA = vol.Schema({
    vol.Optional("model"): str,
    vol.Optional("batch_size"): _BATCH,
    vol.Optional("vram_allocation"): _size,
})
_TTS_SCHEMA = vol.Schema({
    vol.Optional("model"): str,
    vol.Optional("voices"): str,
    vol.Optional("voice"): str,
    vol.Optional("batch_size"): _BATCH,
    vol.Optional("vram_allocation"): _size,
})

CONFIG_SCHEMA = vol.Schema({
    vol.Optional("voice_processing"): {
        vol.Optional("mode"): vol.In(MODES),
        vol.Optional("device"): vol.In(DEVICES),
        vol.Optional("moshi"): _MOSHI_SCHEMA,
        vol.Optional("external_llm"): _LLM_SCHEMA,
        vol.Optional("stt"): _STT_SCHEMA,
        vol.Optional("tts"): _TTS_SCHEMA,
    },
    vol.Optional("audio"): {
        vol.Optional("sample_rate"): vol.All(int, vol.Range(min=8000, max=192000)),
        vol.Optional("channels"): vol.All(int, vol.Range(min=1, max=8)),
        vol.Optional("format"): vol.In(("wav", "pcm", "opus")),
        vol.Optional("vad_enabled"): bool,
        vol.Optional("vad_threshold"): _PROBABILITY,
        vol.Optional("silence_duration_ms"): vol.All(int, vol.Range(min=0, max=10000)),
        vol.Optional("noise_reduction"): bool,
        vol.Optional("echo_cancellation"): bool,
        vol.Optional("auto_gain_control"): bool,
    },
    vol.Optional("integration"): {
        vol.Optional("memory_enabled"): bool,
        vol.Optional("personality_enabled"): bool,
        vol.Optional("tools_enabled"): bool,
        vol.Optional("websocket_events"): bool,
        vol.Optional("memory_context_limit"): vol.All(int, vol.Range(min=0, max=100)),
        vol.Optional("personality_adaptation"): bool,
        vol.Optional("tool_calling_during_speech"): bool,
        vol.Optional("conversation_timeout"): vol.All(vol.Coerce(float), vol.Range(min=1)),
    },
    vol.Optional("personality"): {
        vol.Optional("name"): str,
        vol.Optional("style"): str,
        vol.Optional("verbosity"): vol.In(("brief", "normal", "detailed")),
        vol.Optional("tone"): vol.In(("friendly", "formal", "casual", "playful")),
        vol.Optional("extra_prompt"): str,
    },
    vol.Optional("server"): {
        vol.Optional("uri"): _uri,
        vol.Optional("zeroconf"): vol.Any(None, str),
        vol.Optional("zeroconf_host"): vol.Any(None, str),
        vol.Optional("data_dir"): str,
        vol.Optional("http_host"): str,
        vol.Optional("http_port"): _PORT,
        vol.Optional("http_token"): vol.Any(None, vol.All(str, vol.Length(min=8))),
        vol.Optional("debug"): bool,
        vol.Optional("log_format"): vol.In(LOG_FORMATS),
    },
})


def _format_invalid(err: vol.Invalid) -> str:
    path = ".".join(str(part) for part in err.path) or "(top level)"
    message = err.error_message or str(err)
    if message == "extra keys not allowed":
        message = "unknown key"
    return f"{path}: {message}"


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a config mapping; raise ConfigError naming the first bad key."""
    try:
        return CONFIG_SCHEMA(raw)
    except vol.MultipleInvalid as err:
        raise ConfigError(_format_invalid(err.errors[0])) from None
    except vol.Invalid as err:
        raise ConfigError(_format_invalid(err)) from None


def _build(cls: type, values: dict[str, Any]) -> Any:
    kwargs = {}
    for item in fields(cls):
        if item.name not in values:
            continue
        value = values[item.name]
        default = item.default_factory() if callable(item.default_factory) else None
        kwargs[item.name] = _build(type(default), value) if is_dataclass(default) else value
    return cls(**kwargs)


def config_from_dict(raw: dict[str, Any]) -> VoiceConfig:
    """Build a VoiceConfig from a mapping shaped like the YAML file."""
    data = validate(raw or {})
    flat = dict(data.get("voice_processing", {}))
    for section in ("audio", "integration", "personality", "server"):
        flat[section] = data.get(section, {})
    return _build(VoiceConfig, flat)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping (not yet validated)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} is not valid YAML") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return raw or {}


def load_config(path: str | Path | None) -> VoiceConfig:
    """Read and validate a YAML config file (defaults when `path` is None)."""
    return config_from_dict(read_config_file(path) if path is not None else {})


def _describe_validator(validator: Any) -> str:
    if validator in (bool, int, str, float):
        return validator.__name__
    if isinstance(validator, vol.In):
        return " \\| ".join(f"`{choice}`" for choice in validator.container)
    if isinstance(validator, vol.All):
        parts = [_describe_validator(v) for v in validator.validators]
        return ", ".join(part for part in parts if part)
    if isinstance(validator, vol.Range):
        bounds = [f"≥ {validator.min}" if validator.min is not None else "",
                  f"≤ {validator.max}" if validator.max is not None else ""]
        return " ".join(b for b in bounds if b)
    if isinstance(validator, vol.Coerce):
        return validator.type.__name__
    if validator is _size:
        return "size (`8GB`, `512MB`) or null"
    if validator is _url:
        return "http(s) URL"
    if validator is _uri:
        return "`tcp://HOST:PORT` or `unix://PATH`"
    if isinstance(validator, vol.Any):
        return " or ".join("null" if v is None else _describe_validator(v) for v in validator.validators)
    return type(validator).__name__.lower()


def _defaults(section: str) -> Any:
    config = VoiceConfig()
    return getattr(config, section) if section in ("audio", "integration", "personality", "server") else config


def config_reference() -> str:
    """Markdown reference of every config key (generated from the schema and the defaults)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `wyoming_coda/config.py` (`python -m wyoming_coda.config`); do not edit.",
        "Pass the file with `--config FILE`; command-line flags override it.",
        "",
        "| key | accepted values | default |",
        "|---|---|---|",
    ]

    def walk(schema: dict[Any, Any], prefix: str, defaults: Any) -> None:
        for marker, validator in schema.items():
            key = str(marker.schema)
            value = validator.schema if isinstance(validator, vol.Schema) else validator
            default = getattr(defaults, key, None)
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.", default)
                continue
            if default is None:
                shown = "null"
            else:
                shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
            lines.append(f"| `{prefix}{key}` | {_describe_validator(value)} | {shown} |")

    for section, schema in CONFIG_SCHEMA.schema.items():
        name = str(section.schema)
        walk(schema, f"{name}.", _defaults(name))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
