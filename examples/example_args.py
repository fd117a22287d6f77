"""Command-line options shared by the examples: where the LLM is, which device, where data lives.
The speech models are the real Kyutai ones unless HF_HUB_CACHE points at other checkpoints
under the same repo ids."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from wyoming_coda import ExternalLLMConfig, VoiceConfig
from wyoming_coda.config import ServerConfig


def parser(description: str, audio_files: bool = False) -> argparse.ArgumentParser:
    """The shared options; with `audio_files`, also the question's and the answer's WAV files."""
    result = argparse.ArgumentParser(description=description)
    if audio_files:
        result.add_argument("question", type=Path, help="WAV file with the question")
        result.add_argument("answer", type=Path, help="where to write the spoken answer")
    result.add_argument("--llm-url", default="http://127.0.0.1:11434", help="Ollama server")
    result.add_argument("--llm-model", default="qwen3:8b", help="Ollama model")
    result.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    result.add_argument("--data-dir", default="data", help="memory and personality files")
    return result


def config(args: argparse.Namespace, **fields: Any) -> VoiceConfig:
    return VoiceConfig(
        device=args.device,
        external_llm=ExternalLLMConfig(url=args.llm_url, model=args.llm_model),
        server=ServerConfig(data_dir=args.data_dir),
        **fields,
    )
