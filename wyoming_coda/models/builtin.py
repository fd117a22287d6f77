"""The engines this server ships, registered by profile: `kyutai` (Kyutai STT, TTS and Moshi
over moshi's streaming modules; a GPU) and `cpu` (Whisper speech-to-text and Kyutai's Pocket
TTS, real time on a CPU)."""

from __future__ import annotations

from pathlib import Path

from ..engines.lm import LMStack
from ..engines.moshi import MoshiEngine
from ..engines.moshi_compat import load_tts_model, retrieval_trigger
from ..engines.pocket import PocketSpeech, load_pocket_model, pocket_languages
from ..engines.stt import SpeechToText
from ..engines.tts import TextToSpeech
from ..engines.whisper import WhisperSpeechToText, load_whisper_model, whisper_languages
from ..speak.voices import load_voice_sample
from .checkpoints import list_voices, model_languages
from .registry import Attribution, EngineRegistry, EngineSpec, LoadRequest


def _kyutai_stt(request: LoadRequest) -> SpeechToText:
    stack = LMStack.load(request.checkpoint, request.device, request.dtype)
    return SpeechToText(stack, request.config.stt.batch_size, request.executor, request.on_step)


def _kyutai_tts(request: LoadRequest) -> TextToSpeech:
    voices = request.config.tts.voices
    model = load_tts_model(request.checkpoint, request.device, request.dtype, voices)
    return TextToSpeech(model, request.config.tts.batch_size, request.executor, request.on_step,
                        lambda suffix: list_voices(voices, suffix))


def _moshi(request: LoadRequest) -> MoshiEngine:
    info, trigger = retrieval_trigger(request.checkpoint)
    stack = LMStack.load(info, request.device, request.dtype, request.config.moshi.quantize)
    return MoshiEngine(stack, request.config.moshi.batch_size, request.executor, request.on_step, trigger)


def _whisper(request: LoadRequest) -> WhisperSpeechToText:
    import torch

    capacity = request.config.stt.batch_size
    return WhisperSpeechToText(load_whisper_model(request.source, torch.get_num_threads()), capacity,
                               request.executor, request.on_step, request.hints)


def _pocket(request: LoadRequest) -> PocketSpeech:
    tts = request.config.tts
    return PocketSpeech(load_pocket_model(request.source, tts.int8), tts.batch_size, request.executor,
                        Path(tts.voices).expanduser(), load_voice_sample, request.on_step)


def builtin_engines() -> EngineRegistry:
    """The engines of both shipped profiles."""
    registry = EngineRegistry()
    registry.register("kyutai", EngineSpec("stt", "Kyutai STT", _kyutai_stt, model_languages))
    registry.register("kyutai", EngineSpec("tts", "Kyutai TTS", _kyutai_tts, model_languages))
    registry.register("kyutai", EngineSpec("moshi", "Moshi", _moshi, model_languages))
    registry.register("cpu", EngineSpec(
        "stt", "Whisper", _whisper, whisper_languages, checkpoint=False,
        attribution=Attribution("OpenAI Whisper (faster-whisper)", "https://github.com/SYSTRAN/faster-whisper"),
        threads=lambda config: config.stt.batch_size))
    registry.register("cpu", EngineSpec(
        "tts", "Pocket TTS", _pocket, pocket_languages, checkpoint=False,
        attribution=Attribution("Kyutai Pocket TTS", "https://huggingface.co/kyutai/pocket-tts"),
        threads=lambda config: config.tts.batch_size))
    return registry
