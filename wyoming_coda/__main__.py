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

import voluptuous as vol

from . import __version__
from .config import ConfigError, Key, VoiceConfig, choices, config_from_dict, config_keys, read_config_file

_LOGGER = logging.getLogger("wyoming_coda")


def _arg_type(validator: Any) -> Any:
    """The Python type a flag's text is turned into before the schema checks it."""
    if validator in (int, float):
        return validator
    if isinstance(validator, vol.Coerce):
        return validator.type
    if isinstance(validator, vol.All):
        return _arg_type(validator.validators[0])
    return None


def _add_flag(parser: argparse.ArgumentParser, key: Key) -> None:
    assert key.flag is not None
    kwargs: dict[str, Any] = {"default": None, "help": f"{key.help} ({'.'.join(key.path)})", **key.cli}
    if isinstance(key.validator, vol.In):
        kwargs["choices"] = choices(key.validator)
    elif "action" not in kwargs and (kind := _arg_type(key.validator)) is not None:
        kwargs["type"] = kind
    parser.add_argument(key.flag, dest=_dest(key), **kwargs)


def _dest(key: Key) -> str:
    assert key.flag is not None
    return key.flag.lstrip("-").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wyoming-coda",
        description="Coda Voice: Wyoming server for Kyutai speech (STT, TTS, Moshi) and an LLM.",
    )
    for key in config_keys():
        if key.flag:
            _add_flag(parser, key)
    parser.add_argument("--config", metavar="FILE", help="YAML config file (flags override it)")
    parser.add_argument("--version", action="version", version=__version__)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, shaped like the YAML file."""
    tree: dict[str, Any] = {}
    for key in config_keys():
        value = getattr(args, _dest(key)) if key.flag else None
        if value is None:
            continue
        node = tree
        for part in key.path[:-1]:
            node = node.setdefault(part, {})
        node[key.path[-1]] = value
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
