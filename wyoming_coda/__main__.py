"""Command line: `wyoming-coda` / `python -m wyoming_coda`."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from . import __version__
from .config import (
    DEFAULT_ZEROCONF_NAME,
    DEVICES,
    LLM_PROVIDERS,
    LOG_FORMATS,
    MODES,
    ConfigError,
    VoiceConfig,
    config_from_dict,
    read_config_file,
)

_LOGGER = logging.getLogger("wyoming_coda")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-coda",
        description="Coda Voice: Wyoming server for Kyutai speech (STT, TTS, Moshi) and an LLM.",
    )
    add = parser.add_argument
    add("--uri", help="where to listen: tcp://HOST:PORT or unix://PATH (default tcp://0.0.0.0:10300)")
    add("--zeroconf", nargs="?", const=DEFAULT_ZEROCONF_NAME, default=None, metavar="NAME",
        help=f"advertise over zeroconf as NAME (default name {DEFAULT_ZEROCONF_NAME})")
    add("--zeroconf-host", metavar="ADDRESS",
        help="advertise only this address and bind zeroconf to it (default: all interfaces)")
    add("--data-dir", help="directory for conversation memory and server state (default ./data)")
    add("--device", choices=DEVICES, help="where the models run (default auto: cuda when available)")
    add("--stt-model", help="Kyutai STT: Hugging Face repo id or local directory")
    add("--tts-model", help="Kyutai TTS: Hugging Face repo id or local directory")
    add("--tts-voices", help="TTS voice repository (repo id) or local directory")
    add("--tts-voice", help="default TTS voice (name inside the voice repository)")
    add("--moshi-model", help="Moshi speech-to-speech: Hugging Face repo id or local directory")
    add("--duplex", action=argparse.BooleanOptionalAction, default=None,
        help="serve full-duplex Moshi sessions on the HTTP side port in hybrid mode too")
    add("--mode", choices=MODES, help="processing mode (default hybrid)")
    add("--llm-provider", choices=LLM_PROVIDERS,
        help="ollama (default), openai (any OpenAI-compatible server) or llamacpp (embedded, GGUF)")
    add("--llm-url", help="LLM server URL (default Ollama at http://127.0.0.1:11434)")
    add("--llm-model", help="LLM model name (llamacpp: a GGUF path or owner/repo/file.gguf)")
    add("--http-host", help="address of the HTTP side port (default 0.0.0.0)")
    add("--http-port", type=int, help="HTTP side port; 0 disables it (default 10301)")
    add("--http-token", help="require 'Authorization: Bearer TOKEN' on the side port (except /healthz)")
    add("--memory", action=argparse.BooleanOptionalAction, default=None,
        help="conversation memory in --data-dir (default on)")
    add("--personality", action=argparse.BooleanOptionalAction, default=None,
        help="personality adaptation from feedback (default on)")
    add("--config", metavar="FILE", help="YAML config file (flags override it)")
    add("--debug", action="store_true", help="log DEBUG messages")
    add("--log-format", choices=LOG_FORMATS, help="text (default) or json lines")
    add("--version", action="version", version=__version__)
    return parser


# flag -> (section, key) in the YAML layout
_FLAG_KEYS: dict[str, tuple[str, ...]] = {
    "uri": ("server", "uri"),
    "zeroconf": ("server", "zeroconf"),
    "zeroconf_host": ("server", "zeroconf_host"),
    "data_dir": ("server", "data_dir"),
    "http_host": ("server", "http_host"),
    "http_port": ("server", "http_port"),
    "http_token": ("server", "http_token"),
    "log_format": ("server", "log_format"),
    "device": ("voice_processing", "device"),
    "mode": ("voice_processing", "mode"),
    "stt_model": ("voice_processing", "stt", "model"),
    "tts_model": ("voice_processing", "tts", "model"),
    "tts_voices": ("voice_processing", "tts", "voices"),
    "tts_voice": ("voice_processing", "tts", "voice"),
    "moshi_model": ("voice_processing", "moshi", "model_path"),
    "duplex": ("voice_processing", "moshi", "duplex"),
    "llm_provider": ("voice_processing", "external_llm", "provider"),
    "llm_url": ("voice_processing", "external_llm", "url"),
    "llm_model": ("voice_processing", "external_llm", "model"),
    "memory": ("integration", "memory_enabled"),
    "personality": ("integration", "personality_enabled"),
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, shaped like the YAML file."""
    tree: dict[str, Any] = {}
    for flag, path in _FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    if args.debug:
        tree.setdefault("server", {})["debug"] = True
    return tree


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config(args: argparse.Namespace) -> VoiceConfig:
    """The config file (if any) with the command-line flags on top."""
    raw = read_config_file(args.config) if args.config else {}
    return config_from_dict(_merge(raw, _overrides(args)))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(debug: bool, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if debug else logging.INFO, handlers=[handler])


async def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = resolve_config(args)
    except ConfigError as err:
        print(f"wyoming-coda: config error: {err}", file=sys.stderr)
        return 2
    if config.server.zeroconf and not config.server.uri.startswith("tcp://"):
        print("wyoming-coda: --zeroconf needs a tcp:// --uri", file=sys.stderr)
        return 2
    setup_logging(config.server.debug, config.server.log_format)
    if config.device == "cpu":
        os.environ.setdefault("NO_TORCH_COMPILE", "1")

    from .server import CodaServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    _LOGGER.info("Coda Voice %s starting (mode %s, device %s)", __version__, config.mode, config.device)
    try:
        await CodaServer(config).run(stop)
    except OSError as err:
        _LOGGER.error("Cannot start: %s", err)
        return 1
    return 0


def run() -> None:
    sys.exit(asyncio.run(main()))


if __name__ == "__main__":
    run()
