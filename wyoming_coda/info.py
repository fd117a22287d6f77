"""The Wyoming `info` answer: programs, models, languages, voices and streaming flags."""

from __future__ import annotations

from wyoming.info import (
    AsrModel,
    AsrProgram,
    Attribution,
    HandleModel,
    HandleProgram,
    Info,
    TtsProgram,
    TtsVoice,
)

from . import __version__
from .checkpoints import is_local, model_languages
from .config import VoiceConfig
from .models import ModelStore

KYUTAI = Attribution(name="Kyutai", url="https://kyutai.org")
CODA = Attribution(name="Coda Voice", url="https://github.com/coda-voice/wyoming-coda")


def _model_attribution(source: str) -> Attribution:
    if is_local(source):
        return Attribution(name="local", url=f"file://{source}")
    return Attribution(name="Kyutai", url=f"https://huggingface.co/{source}")


def build_info(config: VoiceConfig, store: ModelStore, voices: list[str]) -> Info:
    """Describe the asr, tts and handle programs with the models this server runs."""
    stt, tts = store.slots["stt"], store.slots["tts"]
    stt_langs = model_languages(stt.source)
    tts_langs = model_languages(tts.source)
    llm = config.external_llm
    asr = AsrProgram(
        name="coda-stt",
        description="Kyutai streaming speech-to-text",
        attribution=KYUTAI,
        installed=True,
        version=__version__,
        models=[
            AsrModel(
                name=stt.source,
                description=f"Kyutai STT ({stt.state})",
                attribution=_model_attribution(stt.source),
                installed=stt.state == "ready",
                version=None,
                languages=stt_langs,
            )
        ],
        supports_transcript_streaming=True,
    )
    tts_program = TtsProgram(
        name="coda-tts",
        description="Kyutai streaming text-to-speech",
        attribution=KYUTAI,
        installed=True,
        version=__version__,
        voices=[
            TtsVoice(
                name=voice,
                description=f"Kyutai TTS voice on {tts.source}",
                attribution=_model_attribution(config.tts.voices),
                installed=tts.state == "ready",
                version=None,
                languages=tts_langs,
            )
            for voice in voices
        ],
        supports_synthesize_streaming=True,
    )
    handle = HandleProgram(
        name="coda-llm",
        description=f"Conversation through the {llm.provider} LLM with tool calls",
        attribution=CODA,
        installed=True,
        version=__version__,
        models=[
            HandleModel(
                name=llm.model,
                description=f"{llm.provider} model at {llm.url}",
                attribution=CODA,
                installed=True,
                version=None,
                languages=stt_langs,
            )
        ],
        supports_handled_streaming=True,
    )
    return Info(asr=[asr], tts=[tts_program], handle=[handle])
