"""Coda Voice: Kyutai speech + LLM voice assistant server for Home Assistant (Wyoming)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wyoming-coda")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"
