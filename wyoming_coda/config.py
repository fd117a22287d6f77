"""Configuration: the spec's `VoiceConfig`, its YAML form and the voluptuous schema behind both.

A YAML file has the spec's sections (`voice_processing`, `audio`, `integration`) plus a
`server` section; command-line flags override the file (see `__main__`).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

import voluptuous as vol
import yaml

from .access import PRIVATE_NETWORKS, network
from .personality import TONES, VERBOSITY

MODES = ("moshi_only", "hybrid", "adaptive")
DEVICES = ("auto", "cuda", "cpu")
LLM_PROVIDERS = ("ollama", "openai", "llamacpp")
LOG_FORMATS = ("text", "json")

DEFAULT_MOSHI_MODEL = "kyutai/moshika-pytorch-bf16"
DEFAULT_STT_MODEL = "kyutai/stt-1b-en_fr"
DEFAULT_TTS_MODEL = "kyutai/tts-1.6b-en_fr"
DEFAULT_TTS_VOICES = "kyutai/tts-voices"
DEFAULT_TTS_VOICE = "expresso/ex03-ex01_happy_001_channel1_334s.wav"
DEFAULT_LANGUAGE_VOICES = ("fr=cml-tts/fr/2465_1943_000152-0002.wav",)
PROFILES = ("kyutai", "cpu")
# the CPU profile's models (docs/hardware.md: Kyutai's are not real time on a CPU)
CPU_STT_MODEL = "tiny.en"  # faster-whisper, int8
CPU_TTS_MODEL = "english"  # Pocket TTS
CPU_TTS_VOICE = "alba"
DEFAULT_LLM_URL = "http://127.0.0.1:11434"
DEFAULT_LLM_MODEL = "qwen3:8b"
DEFAULT_URI = "tcp://0.0.0.0:10300"
DEFAULT_HTTP_PORT = 10301
DEFAULT_HTTPS_PORT = 10302
DEFAULT_ZEROCONF_NAME = "coda-voice"

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*$", re.IGNORECASE)
_SIZE_FACTORS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class ConfigError(Exception):
    """A configuration value is invalid; the message names the key."""


def turn_modes(moshi_loaded: bool, llm_enabled: bool) -> list[str]:
    """The modes a turn may ask for on a server (a conversation agent's own mode): those of the
    LLM when there is one, moshi_only when Moshi is loaded."""
    return (["hybrid", "adaptive"] if llm_enabled else []) + (["moshi_only"] if moshi_loaded else [])


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


def _language_voice(value: Any) -> str:
    """LANG=VOICE: the voice of answers in LANG."""
    text = str(value)
    if re.match(r"^[a-z]{2}=\S+$", text):
        return text
    raise vol.Invalid(f"expected LANG=VOICE such as fr=cml-tts/fr/2465_1943_000152-0002.wav, got {text!r}")


def _network(value: Any) -> str:
    """A client network in CIDR form (or a single address)."""
    try:
        network(str(value))
    except ValueError as err:
        raise vol.Invalid(f"expected a network such as 192.168.1.0/24: {err}") from None
    return str(value)


def _origin(value: Any) -> str:
    text = str(value).rstrip("/")
    if re.fullmatch(r"https?://[^/\s]+", text):
        return text.lower()
    raise vol.Invalid(f"expected an origin such as https://coda.lan:10302, got {value!r}")


def _url(value: Any) -> str:
    """An http(s) URL."""
    text = str(value)
    if re.match(r"^https?://[^/\s]+", text):
        return text
    raise vol.Invalid(f"expected an http:// or https:// URL, got {text!r}")


_PORT = vol.All(int, vol.Range(min=0, max=65535))
_PROBABILITY = vol.All(vol.Coerce(float), vol.Range(min=0.0, max=1.0))
_BATCH = vol.All(int, vol.Range(min=1, max=256))
VOICE_FORMATS = ("wav", "pcm", "opus")


def option(default: Any, validator: Any, help: str, flag: str | None = None, **cli: Any) -> Any:
    """One config key, declared once: its default, its validator (the YAML schema), what it
    does (the docs and `--help`), and its command-line flag when it has one (`cli`: extra
    argparse arguments)."""
    return field(default=default, metadata={"validator": validator, "help": help, "flag": flag, "cli": cli})


def section(cls: type, top_level: bool = False) -> Any:
    """A nested section; `top_level`: a top-level YAML section rather than one inside
    `voice_processing`."""
    return field(default_factory=cls, metadata={"top_level": top_level})


@dataclass
class MoshiConfig:
    """Moshi speech-to-speech model."""

    model_path: str = option(DEFAULT_MOSHI_MODEL, str, "Moshi: Hugging Face repo id or local directory",
                             "--moshi-model")
    vram_allocation: str | None = option(None, _size, "memory budget of Moshi (null: none, its use is reported)")
    quantize: bool = option(
        False, bool, "Moshi in 8 bits (bitsandbytes LLM.int8, the `q8` extra): a bf16 checkpoint is quantised on "
        "load; a q8 checkpoint (kyutai/moshika-pytorch-q8) is 8 bits whatever this says", "--moshi-q8",
        action=argparse.BooleanOptionalAction)
    voices: tuple[str, ...] = option(
        (), vol.All([str], vol.Coerce(tuple)), "further Moshi checkpoints (repo ids or directories, e.g. "
        "kyutai/moshiko-pytorch-bf16) that duplex sessions may pick as their voice; each takes Moshi's memory again",
        "--moshi-voice", action="append")
    target_latency_ms: int = option(
        200, vol.All(int, vol.Range(min=1)),
        "duplex sessions: a Moshi step slower than this is counted late (step metadata `late`, a metric)")
    external_llm_enabled: bool = option(
        True, bool, "use the external LLM (false: no LLM at all, only `moshi_only` mode is allowed)")
    duplex: bool = option(False, bool, "serve full-duplex Moshi sessions on the HTTP side port in hybrid mode too",
                          "--duplex", action=argparse.BooleanOptionalAction)
    batch_size: int = option(4, _BATCH, "concurrent Moshi sessions stepped in one batch")
    reply_max_seconds: float = option(15.0, vol.All(vol.Coerce(float), vol.Range(min=1, max=120)),
                                      "pipeline turns answered by Moshi: the longest answer")


@dataclass
class ExternalLLMConfig:
    """The reasoning LLM (Ollama by default)."""

    provider: str = option("ollama", vol.In(LLM_PROVIDERS),
                           "ollama, openai (any OpenAI-compatible server) or llamacpp (embedded, GGUF)",
                           "--llm-provider")
    url: str = option(DEFAULT_LLM_URL, _url, "LLM server URL", "--llm-url")
    model: str = option(DEFAULT_LLM_MODEL, str, "LLM model name (llamacpp: a GGUF path or owner/repo/file.gguf)",
                        "--llm-model")
    vram_allocation: str | None = option(None, _size, "memory the LLM server uses (reported, not enforced)")
    parallel_processing: bool = option(
        True, bool, "speak each sentence while the LLM writes the next (false: speak once the answer is complete)")
    timeout: float = option(60.0, vol.All(vol.Coerce(float), vol.Range(min=1, max=600)),
                            "seconds the LLM may stay silent before the turn fails")
    temperature: float | None = option(
        None, vol.Any(None, vol.All(vol.Coerce(float), vol.Range(min=0, max=2))),
        "sampling temperature (null: the LLM server's default; 0: the same answer every time)")
    keep_alive: str = option("-1", vol.Coerce(str), "Ollama keep_alive: how long the model stays loaded")
    think: bool = option(False, bool, "let reasoning models think before answering (slower first word)")
    threads: int | None = option(None, vol.Any(None, vol.All(int, vol.Range(min=1, max=256))),
                                 "llamacpp: CPU threads (null: all cores)")
    context_size: int = option(4096, vol.All(int, vol.Range(min=512, max=1 << 20)), "llamacpp: context tokens")
    max_tool_iterations: int = option(10, vol.All(int, vol.Range(min=1, max=50)),
                                      "LLM rounds with tool calls per turn before it must answer")
    max_answer_tokens: int = option(
        400, vol.All(int, vol.Range(min=10, max=100000)),
        "longest answer, in streamed pieces (about tokens): past it the answer ends at the next sentence end")
    max_answer_seconds: float = option(
        30.0, vol.All(vol.Coerce(float), vol.Range(min=1, max=3600)),
        "longest time an answer may keep streaming: past it the answer ends at the next sentence end")
    max_turn_seconds: float = option(
        60.0, vol.All(vol.Coerce(float), vol.Range(min=1, max=3600)),
        "longest time the tool rounds of a turn may take: past it the LLM must answer without tools")
    holding_phrase_seconds: float = option(
        4.0, vol.All(vol.Coerce(float), vol.Range(min=0, max=600)),
        "with nothing said this long into a turn, say \"One moment…\" once (0: never)")


@dataclass
class STTConfig:
    """Kyutai streaming speech-to-text."""

    model: str = option(DEFAULT_STT_MODEL, str, "Kyutai STT: Hugging Face repo id or local directory",
                        "--stt-model")
    batch_size: int = option(8, _BATCH, "concurrent transcriptions stepped in one batch")
    vram_allocation: str | None = option(None, _size, "memory budget of the STT model (null: none)")
    end_of_turn: bool = option(
        True, bool, "the server ends a spoken command itself (the STT's end-of-turn head, Silero VAD without "
        "it) and tells Home Assistant so (requires_external_vad: false)", "--end-of-turn",
        action=argparse.BooleanOptionalAction)
    end_of_turn_threshold: float = option(0.6, _PROBABILITY,
                                          "the command ends when the smoothed end-of-turn head passes this")
    end_of_turn_smoothing: int = option(4, vol.All(int, vol.Range(min=1, max=50)),
                                        "80 ms frames the end-of-turn head is averaged over")
    end_of_turn_ignore: int = option(12, vol.All(int, vol.Range(min=0, max=500)),
                                     "first 80 ms frames of a command whose head scores are ignored")
    end_of_turn_silence_ms: int = option(700, vol.All(int, vol.Range(min=100, max=10000)),
                                         "without the head: silence after speech that ends the command (VAD)")
    end_of_turn_max_pause_ms: int = option(
        1000, vol.All(int, vol.Range(min=100, max=30000)),
        "with the head: a silence this long ends the command even when the head says the user is not done (close "
        "to Home Assistant's own 0.7 s timer, so an unsure head never costs much more)")
    no_speech_timeout: float = option(8.0, vol.All(vol.Coerce(float), vol.Range(min=0.5, max=120)),
                                      "seconds of audio without speech after which a command ends empty")
    max_command_seconds: float = option(15.0, vol.All(vol.Coerce(float), vol.Range(min=1, max=600)),
                                        "longest spoken command: it ends here whatever the user does")


@dataclass
class TTSConfig:
    """Kyutai streaming text-to-speech and its voice repository."""

    model: str = option(DEFAULT_TTS_MODEL, str, "Kyutai TTS: Hugging Face repo id or local directory",
                        "--tts-model")
    voices: str = option(DEFAULT_TTS_VOICES, str, "TTS voice repository (repo id) or local directory",
                         "--tts-voices")
    voice: str = option(DEFAULT_TTS_VOICE, str, "default TTS voice (name inside the voice repository)",
                        "--tts-voice")
    batch_size: int = option(8, _BATCH, "concurrent syntheses stepped in one batch")
    vram_allocation: str | None = option(None, _size, "memory budget of the TTS model (null: none)")
    int8: bool = option(False, bool, "CPU profile: Pocket TTS with int8 dynamic quantisation of its transformer "
                        "(about twice as fast; for Raspberry Pi class CPUs)", "--tts-int8",
                        action=argparse.BooleanOptionalAction)
    feed: str = option("words", vol.In(("words", "sentences")),
                       "streamed text reaches the model word by word, or in whole sentences", "--tts-feed")
    language_voices: tuple[str, ...] = option(
        DEFAULT_LANGUAGE_VOICES, vol.All([_language_voice], vol.Coerce(tuple)),
        "LANG=VOICE: the voice of answers in another language than the default voice's, when a request "
        "names no voice", "--language-voice", action="append")


@dataclass
class AudioConfig:
    """The spec's `audio` section."""

    sample_rate: int = option(24000, vol.All(int, vol.Range(min=8000, max=192000)),
                              "voice API (`process_voice_*`): rate of answer audio and of `pcm` input")
    channels: int = option(1, vol.All(int, vol.Range(min=1, max=8)),
                           "voice API: channels of answer audio and of `pcm` input")
    format: str = option("wav", vol.In(VOICE_FORMATS),
                         "voice API audio: `wav` (a WAV file; a stream that starts with a WAV header), "
                         "`pcm` (raw s16le), `opus` (Ogg/Opus, 24 kHz mono)")
    vad_enabled: bool = option(True, bool, "Silero VAD on every input (voice events, end of speech)")
    vad_threshold: float = option(0.5, _PROBABILITY, "speech probability above which a window is speech")
    silence_duration_ms: int = option(1000, vol.All(int, vol.Range(min=0, max=10000)),
                                      "silence that ends an utterance")
    noise_reduction: bool = option(True, bool, "WebRTC noise suppression of the input")
    echo_cancellation: bool = option(True, bool, "cancel the server's own voice in duplex sessions (SpeexDSP)")
    auto_gain_control: bool = option(True, bool, "WebRTC automatic gain of the input")


@dataclass
class IntegrationConfig:
    """The spec's `integration` section."""

    memory_enabled: bool = option(True, bool, "conversation memory in the data directory", "--memory",
                                  action=argparse.BooleanOptionalAction)
    personality_enabled: bool = option(True, bool, "personality profiles per user", "--personality",
                                       action=argparse.BooleanOptionalAction)
    tools_enabled: bool = option(True, bool, "the server's own tools (time, timers) for the LLM")
    websocket_events: bool = option(True, bool, "the `/api/events` WebSocket on the HTTP side port")
    tool_calling_during_speech: bool = option(
        True, bool, "speak the LLM's words before a tool call at once (false: a round is spoken only once it "
        "ended without tool calls)")
    memory_context_limit: int = option(5, vol.All(int, vol.Range(min=0, max=100)),
                                       "memories recalled into a turn's prompt")
    personality_adaptation: bool = option(True, bool, "adapt the profile to explicit feedback")
    conversation_timeout: float = option(300.0, vol.All(vol.Coerce(float), vol.Range(min=1)),
                                         "seconds without a turn before a Home Assistant conversation ends")
    duplex_home_assistant: str | None = option(
        None, vol.Any(None, str), "the linked Home Assistant whose tools duplex sessions use: its Coda entry's "
        "title or id (null: the first one linked)", "--duplex-home-assistant")


@dataclass
class PersonalityConfig:
    """The assistant's default personality profile."""

    name: str = option("Coda", str, "the assistant's name")
    style: str = option("a helpful voice assistant for the home", str, "who the assistant is")
    verbosity: str = option("brief", vol.In(VERBOSITY), "default answer length")
    tone: str = option("friendly", vol.In(TONES), "default tone")
    extra_prompt: str = option("", str, "instructions added to every system prompt")


@dataclass
class ServerConfig:
    """Where and how the server listens."""

    uri: str = option(DEFAULT_URI, _uri, "where to listen: tcp://HOST:PORT or unix://PATH", "--uri")
    zeroconf: str | None = option(None, vol.Any(None, str), "advertise over zeroconf under this name",
                                  "--zeroconf", nargs="?", const=DEFAULT_ZEROCONF_NAME, metavar="NAME")
    zeroconf_host: str | None = option(None, vol.Any(None, str),
                                       "advertise only this address and bind zeroconf to it", "--zeroconf-host",
                                       metavar="ADDRESS")
    data_dir: str = option("data", str, "directory for conversation memory and server state", "--data-dir")
    http_host: str = option("0.0.0.0", str, "address of the HTTP side port", "--http-host")
    http_port: int = option(DEFAULT_HTTP_PORT, _PORT, "HTTP side port; 0 disables it", "--http-port")
    https_port: int = option(DEFAULT_HTTPS_PORT, _PORT,
                             "HTTPS side port (the talk page from other machines), with --http-cert/--http-key "
                             "or --http-self-signed", "--https-port")
    http_cert: str | None = option(None, vol.Any(None, str), "TLS certificate (PEM) for the HTTPS side port",
                                   "--http-cert", metavar="FILE")
    http_key: str | None = option(None, vol.Any(None, str), "TLS private key (PEM) of --http-cert", "--http-key",
                                  metavar="FILE")
    http_self_signed: bool = option(False, bool,
                                    "serve HTTPS with a self-signed certificate kept in the data directory",
                                    "--http-self-signed", action="store_const", const=True)
    http_token: str | None = option(None, vol.Any(None, vol.All(str, vol.Length(min=8))),
                                    "the token every side-port client must show ('Authorization: Bearer TOKEN'; "
                                    "default: the one in --http-token-file)", "--http-token")
    http_token_file: str | None = option(
        None, vol.Any(None, str), "file holding the side port's token (default <data-dir>/http-token, made with a "
        "random token on first start, mode 0600)", "--http-token-file", metavar="FILE")
    metrics_public: bool = option(False, bool, "serve /metrics without the token (a Prometheus that cannot send one)",
                                  "--metrics-public", action="store_const", const=True)
    allowed_origins: tuple[str, ...] = option(
        (), vol.All([_origin], vol.Coerce(tuple)), "web origins (scheme://host[:port]) besides the server's own whose "
        "pages may use the side port; repeat the flag for several", "--allowed-origin", action="append")
    allowed_hosts: tuple[str, ...] = option(
        (), vol.All([str], vol.Coerce(tuple)), "names browsers may reach the server by besides its own host names and "
        "addresses (a LAN DNS name, the add-on's network aliases); repeat the flag for several", "--allowed-host",
        action="append")
    max_client_connections: int = option(
        64, vol.All(int, vol.Range(min=1)), "connections one client address may hold at once on each port (Home "
        "Assistant serving many satellites is one client)")
    idle_connection_seconds: float = option(
        600.0, vol.All(vol.Coerce(float), vol.Range(min=1)), "a Wyoming connection that sends nothing this long is closed")
    row_wait_seconds: float = option(
        10.0, vol.All(vol.Coerce(float), vol.Range(min=0.1)),
        "how long a request waits for a free engine row (STT, TTS, Moshi) before a `busy` error")
    stream_idle_seconds: float = option(
        10.0, vol.All(vol.Coerce(float), vol.Range(min=0.5)),
        "an audio stream that sends nothing this long ends and gives its engine row back")
    allow: tuple[str, ...] = option(
        PRIVATE_NETWORKS, vol.All([_network], vol.Coerce(tuple)),
        "client networks (CIDR) let in on the Wyoming and HTTP ports, others refused at once (default: this "
        "machine and private networks); repeat the flag for several", "--allow", action="append")
    debug: bool = option(False, bool, "log DEBUG messages", "--debug", action="store_const", const=True)
    log_format: str = option("text", vol.In(LOG_FORMATS), "text or json lines", "--log-format")


@dataclass
class MemoryConfig:
    """What conversation memory keeps (docs/security.md)."""

    keep_turns_days: int = option(
        30, vol.All(int, vol.Range(min=0)),
        "days the conversation log keeps each turn (0: turns are not kept; remembered facts stay until forgotten)")


@dataclass
class VoiceConfig:
    """Everything the voice system needs; mirrors the YAML layout."""

    mode: str = option("hybrid", vol.In(MODES), "processing mode", "--mode")
    device: str = option("auto", vol.In(DEVICES), "where the models run (auto: cuda when available)", "--device")
    profile: str = option(
        "kyutai", vol.In(PROFILES),
        "speech engines: kyutai (Kyutai STT and TTS, Moshi; a GPU) or cpu (Whisper STT and Pocket TTS, real time "
        f"on a CPU; hybrid mode; models default to {CPU_STT_MODEL} and {CPU_TTS_MODEL}, voice {CPU_TTS_VOICE}, "
        "voices cloned from WAV samples in <data-dir>/voices)", "--profile")
    moshi: MoshiConfig = section(MoshiConfig)
    external_llm: ExternalLLMConfig = section(ExternalLLMConfig)
    stt: STTConfig = section(STTConfig)
    tts: TTSConfig = section(TTSConfig)
    audio: AudioConfig = section(AudioConfig, top_level=True)
    integration: IntegrationConfig = section(IntegrationConfig, top_level=True)
    personality: PersonalityConfig = section(PersonalityConfig, top_level=True)
    memory: MemoryConfig = section(MemoryConfig, top_level=True)
    server: ServerConfig = section(ServerConfig, top_level=True)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"voice_processing.mode: must be one of {', '.join(MODES)}")
        if self.device not in DEVICES:
            raise ConfigError(f"voice_processing.device: must be one of {', '.join(DEVICES)}")
        if (self.server.http_cert is None) != (self.server.http_key is None):
            raise ConfigError("server.http_cert and server.http_key: give both or neither")
        if not self.moshi.external_llm_enabled and self.mode != "moshi_only":
            raise ConfigError(f"voice_processing.moshi.external_llm_enabled: false needs mode moshi_only, "
                              f"{self.mode} mode answers with the LLM")
        if self.profile not in PROFILES:
            raise ConfigError(f"voice_processing.profile: must be one of {', '.join(PROFILES)}")
        if self.profile == "cpu":
            self._cpu_profile()

    def _cpu_profile(self) -> None:
        """The CPU profile: hybrid mode only (Moshi needs a GPU), its own default models."""
        if self.mode != "hybrid" or self.moshi.duplex:
            raise ConfigError("voice_processing.profile: cpu serves hybrid mode without duplex sessions "
                              "(Moshi is not real time on a CPU)")
        if self.stt.model == DEFAULT_STT_MODEL:
            self.stt.model = CPU_STT_MODEL
        if self.tts.model == DEFAULT_TTS_MODEL:
            self.tts.model = CPU_TTS_MODEL
        if self.tts.voice == DEFAULT_TTS_VOICE:
            self.tts.voice = CPU_TTS_VOICE
        if self.tts.voices == DEFAULT_TTS_VOICES:
            self.tts.voices = str(Path(self.server.data_dir) / "voices")
        if self.tts.language_voices == DEFAULT_LANGUAGE_VOICES:
            self.tts.language_voices = ()


@dataclass(frozen=True)
class Key:
    """One declared config key."""

    path: tuple[str, ...]  # YAML path
    attrs: tuple[str, ...]  # attribute path from VoiceConfig
    default: Any
    validator: Any
    help: str
    flag: str | None
    cli: dict[str, Any]


def _keys(cls: type, path: tuple[str, ...], attrs: tuple[str, ...]) -> list[Key]:
    found = []
    for item in fields(cls):
        meta = item.metadata
        if "validator" in meta:
            found.append(Key((*path, item.name), (*attrs, item.name), item.default, meta["validator"],
                             meta["help"], meta["flag"], dict(meta["cli"])))
        else:
            prefix = () if meta.get("top_level") else path
            factory: Any = item.default_factory
            found += _keys(factory, (*prefix, item.name), (*attrs, item.name))
    return found


def config_keys() -> list[Key]:
    """Every config key, in declaration order."""
    return _keys(VoiceConfig, ("voice_processing",), ())


def _schema() -> vol.Schema:
    tree: dict[str, Any] = {}
    for key in config_keys():
        node = tree
        for part in key.path[:-1]:
            node = node.setdefault(part, {})
        node[key.path[-1]] = key.validator

    def build(node: dict[str, Any]) -> dict[Any, Any]:
        return {vol.Optional(k): build(v) if isinstance(v, dict) else v for k, v in node.items()}

    return vol.Schema(build(tree))


CONFIG_SCHEMA = _schema()


def _format_invalid(err: vol.Invalid) -> str:
    path = ".".join(str(part) for part in err.path) or "(top level)"
    message = err.error_message or str(err)
    if message == "extra keys not allowed":
        message = "unknown key"
    return f"{path}: {message}"


def validate(raw: dict[str, Any]) -> dict[str, Any]:
    """Validate a config mapping; raise ConfigError naming the first bad key."""
    try:
        validated: dict[str, Any] = CONFIG_SCHEMA(raw)
        return validated
    except vol.MultipleInvalid as err:
        raise ConfigError(_format_invalid(err.errors[0])) from None
    except vol.Invalid as err:
        raise ConfigError(_format_invalid(err)) from None


def config_from_dict(raw: dict[str, Any]) -> VoiceConfig:
    """Build a VoiceConfig from a mapping shaped like the YAML file."""
    data = validate(raw or {})
    config = VoiceConfig()
    for key in config_keys():
        node: Any = data
        for part in key.path:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            target: Any = config
            for attr in key.attrs[:-1]:
                target = getattr(target, attr)
            setattr(target, key.attrs[-1], node)
    config.__post_init__()
    return config


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


def choices(validator: vol.In) -> list[Any]:
    """The accepted values of a `vol.In` validator."""
    return list(cast(Iterable[Any], validator.container))


def _describe_validator(validator: Any) -> str:
    if validator in (bool, int, str, float):
        return str(validator.__name__)
    if isinstance(validator, vol.In):
        return " \\| ".join(f"`{choice}`" for choice in choices(validator))
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


def config_reference() -> str:
    """Markdown reference of every config key (generated from the declarations)."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from the declarations in `wyoming_coda/config.py` (`python -m wyoming_coda.config`); do not edit.",
        "Pass the file with `--config FILE`; command-line flags override it.",
        "",
        "| key | accepted values | default | flag | what it does |",
        "|---|---|---|---|---|",
    ]
    for key in config_keys():
        default = key.default
        shown = "null" if default is None else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        flag = f"`{key.flag}`" if key.flag else ""
        lines.append(f"| `{'.'.join(key.path)}` | {_describe_validator(key.validator)} | {shown} | {flag} | "
                     f"{key.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(config_reference(), end="")
