"""The Wyoming `info` answer: programs, models, languages, voices and streaming flags."""

from __future__ import annotations

from typing import Any, TypeVar

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

from .. import __version__
from ..config import VoiceConfig
from ..models.checkpoints import is_local
from ..models.registry import Attribution as EngineAttribution
from ..models.store import ModelStore

KYUTAI = Attribution(name="Kyutai", url="https://kyutai.org")
Program = TypeVar("Program", AsrProgram, TtsProgram, HandleProgram)
Model = TypeVar("Model", AsrModel, TtsVoice, HandleModel)
HANDLE_PROGRAM = "coda-chat-only"  # what Home Assistant's wyoming integration names its agent for it
CODA = Attribution(name="Coda Voice", url="https://github.com/coda-voice/wyoming-coda")


def _model_attribution(source: str, engine: EngineAttribution | None) -> Attribution:
    """Where a model comes from: a local directory, the engine's own attribution, or the
    model's Hugging Face repository (Kyutai's)."""
    if is_local(source):
        return Attribution(name="local", url=f"file://{source}")
    if engine is not None:
        return Attribution(name=engine.name, url=engine.url)
    return Attribution(name="Kyutai", url=f"https://huggingface.co/{source}")


def _program(cls: type[Program], name: str, description: str, **fields: Any) -> Program:
    """A program of this server (installed, at the package version)."""
    attribution = fields.pop("attribution", KYUTAI)
    return cls(name=name, description=description, attribution=attribution, installed=True,
               version=__version__, **fields)


def _artifact(cls: type[Model], name: str, description: str, attribution: Attribution, installed: bool,
              languages: list[str]) -> Model:
    """A model or voice of a program."""
    return cls(name=name, description=description, attribution=attribution, installed=installed,
               version=None, languages=languages)


def voice_languages(voice: str, languages: list[str], language_voices: tuple[str, ...]) -> list[str]:
    """The languages a voice is offered for: those `tts.language_voices` gives it, else a
    language folder in its name (`cml-tts/fr/...`), else every language of the model."""
    configured = [entry.split("=", 1)[0] for entry in language_voices if entry.split("=", 1)[1] == voice]
    in_name = [part for part in voice.split("/")[:-1] if part in languages]
    return configured or in_name or languages


def build_info(config: VoiceConfig, store: ModelStore, voices: list[str]) -> Info:
    """Describe the asr, tts and handle programs with the models this server runs."""
    stt, tts = store.slots["stt"], store.slots["tts"]
    stt_langs = stt.languages
    stt_name, tts_name = stt.spec.name, tts.spec.name
    llm = config.external_llm
    audio = config.audio
    asr = _program(
        AsrProgram, "coda-stt", f"{stt_name} speech-to-text",
        models=[_artifact(AsrModel, stt.source, f"{stt_name} ({stt.state})",
                          _model_attribution(stt.source, stt.spec.attribution), stt.state == "ready",
                          stt_langs)],
        supports_transcript_streaming=True,
        # the server ends commands itself (docs/protocol.md), and cleans its input: no double processing
        requires_external_vad=not (config.stt.end_of_turn and (audio.vad_enabled or store.stt_has_end_of_turn())),
        prefers_auto_gain_enabled=not audio.auto_gain_control,
        prefers_noise_reduction_enabled=not audio.noise_reduction,
    )
    voice_source = _model_attribution(config.tts.voices, tts.spec.attribution)
    tts_program = _program(
        TtsProgram, "coda-tts", f"{tts_name} streaming text-to-speech",
        voices=[_artifact(TtsVoice, voice, f"{tts_name} voice on {tts.source}", voice_source, tts.state == "ready",
                          voice_languages(voice, tts.languages, config.tts.language_voices))
                for voice in voices],
        supports_synthesize_streaming=True,
    )
    handle = _program(
        HandleProgram, HANDLE_PROGRAM, f"Chat only, through the {llm.provider} LLM: no home control, no memory "
        "(for those, pick the Coda Voice integration's agent)",
        attribution=CODA,
        models=[_artifact(HandleModel, llm.model, f"{llm.provider} model at {llm.url}", CODA, True, stt_langs)],
        supports_handled_streaming=True,
    )
    return Info(asr=[asr], tts=[tts_program], handle=[handle])
