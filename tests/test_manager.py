"""The spec's Python API in-process: the Quick Start code as written (tiny speech checkpoints,
the Ollama API test double as the LLM), streaming conversation, analytics and events."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest

from tests.ollama_double import OllamaDouble, Reply


@pytest.fixture
async def voice_manager(tiny_hub, ollama: OllamaDouble, tmp_path: Path):
    from wyoming_coda import ExternalLLMConfig, MoshiConfig, ServerConfig, VoiceConfig, VoiceManager

    # The spec's Quick Start, with the device and data directory of a test machine.
    config = VoiceConfig(
        mode="hybrid",
        device="cpu",
        moshi=MoshiConfig(model_path="kyutai/moshika-pytorch-bf16", vram_allocation="8GB"),
        external_llm=ExternalLLMConfig(model="qwen3:8b", url=ollama.url, vram_allocation="20GB"),
        server=ServerConfig(data_dir=str(tmp_path / "data")),
    )
    voice_manager = VoiceManager(config)
    await voice_manager.initialize()
    yield voice_manager
    await voice_manager.close()


def wav_info(data: bytes) -> tuple[int, int, int, int]:
    with wave.open(io.BytesIO(data), "rb") as wav:
        return wav.getframerate(), wav.getsampwidth(), wav.getnchannels(), wav.getnframes()


async def test_quick_start_process_voice_input(voice_manager, ollama: OllamaDouble, speech_dir: Path) -> None:
    ollama.script = [Reply(text="Sure. The kitchen light is now on.")]
    conversation_id = await voice_manager.start_conversation()
    with open(speech_dir / "s0.wav", "rb") as f:
        audio_data = f.read()
    response = await voice_manager.process_voice_input(conversation_id, audio_data)
    assert response.text_content == "Sure. The kitchen light is now on."
    assert response.transcript and ollama.requests[-1]["messages"][-1]["content"] == response.transcript
    rate, width, channels, frames = wav_info(response.audio_data)
    assert (rate, width, channels) == (24000, 2, 1) and frames > 0 and frames % 1920 == 0
    assert {"stt", "llm_first_token", "tts_first_audio"} <= response.latency_ms.keys()


async def test_streaming_conversation(voice_manager, ollama: OllamaDouble, speech_dir: Path) -> None:
    ollama.script = [Reply(text="Hello! How can I help?")]
    conversation_id = await voice_manager.start_conversation()

    async def audio_stream():
        with open(speech_dir / "pause.wav", "rb") as f:
            while chunk := f.read(1024):
                yield chunk

    chunks = [c async for c in voice_manager.process_voice_stream(conversation_id, audio_stream())]
    events = [c.event for c in chunks]
    assert events[0] == "transcript" and events[-1] == "turn_end"
    assert "".join(c.text_delta for c in chunks if c.text_delta) == "Hello! How can I help?"
    audio = b"".join(c.audio_data for c in chunks if c.audio_data)
    assert audio and len(audio) % 3840 == 0
    assert chunks[0].transcript == ollama.requests[-1]["messages"][-1]["content"]


async def test_analytics_and_events(voice_manager, ollama: OllamaDouble, speech_dir: Path) -> None:
    events = voice_manager.events.subscribe()
    conversation_id = await voice_manager.start_conversation(user_id="u1")
    response = await voice_manager.process_voice_input(conversation_id, (speech_dir / "s1.wav").read_bytes())
    analytics = await voice_manager.get_analytics()
    assert analytics.total_conversations == 1 and analytics.active_conversations == 1
    assert analytics.total_turns == 1 and analytics.routes == {"llm": 1}
    assert analytics.average_latency_ms and analytics.average_latency_ms > 0
    assert analytics.latency_ms["stt_final"]["count"] == 1
    assert analytics.vram_usage["device"] == "cpu" and analytics.vram_usage["rss_bytes"] > 0
    assert analytics.audio_quality["level_dbfs"] < 0 and 0 < analytics.audio_quality["speech_ratio"] <= 1
    seen = []
    while not events.empty():
        seen.append(events.get_nowait())
    kinds = [e["event_type"] for e in seen]
    assert kinds[0] == "conversation_start" and "transcript" in kinds and kinds[-1] == "response_generated"
    assert seen[-1]["data"]["text"] == response.text_content == "Okay."
    await voice_manager.end_conversation(conversation_id)
    assert (await voice_manager.get_analytics()).active_conversations == 0


async def test_custom_tool_manager(voice_manager, ollama: OllamaDouble) -> None:
    from wyoming_coda.llm.base import tool_schema
    from wyoming_coda.turn.events import ToolAnswered, TurnDone

    class Garden:
        def schemas(self):
            return [tool_schema("water_garden", "Water the garden.", {"type": "object", "properties": {}})]

        async def call(self, name, arguments):
            return {"watered": True}

    await voice_manager.set_tool_manager(Garden())
    ollama.script = [Reply(tool_calls=[("water_garden", {})]), Reply(text="The garden is watered.")]
    conversation_id = await voice_manager.start_conversation()
    events = [e async for e in voice_manager.process_text(conversation_id, "water the garden")]
    answered = [e for e in events if isinstance(e, ToolAnswered)]
    assert [(a.call.name, a.result, a.error) for a in answered] == [("water_garden", {"watered": True}, None)]
    assert isinstance(events[-1], TurnDone) and events[-1].text == "The garden is watered."


async def test_barge_in_cancels_the_turn(voice_manager, ollama: OllamaDouble) -> None:
    from wyoming_coda.turn.events import AudioOut

    ollama.script = [Reply(text="one two three four five six seven eight nine ten. " * 4, delay=0.02)]
    conversation_id = await voice_manager.start_conversation()
    turn = voice_manager.process_text(conversation_id, "count to forty", speak=True)
    async for event in turn:
        if isinstance(event, AudioOut):
            break
    await turn.aclose()  # the user spoke: stop LLM and TTS now
    tts = voice_manager.store.slots["tts"].model
    assert tts.scheduler.active == 0  # the TTS row was given back
    assert (await voice_manager.get_analytics()).total_turns == 0


async def test_voice_api_audio_formats(voice_manager, ollama: OllamaDouble, speech_dir: Path) -> None:
    """`audio.format` / `sample_rate` / `channels` shape what the voice API takes and gives."""
    import numpy as np
    import soxr
    import sphn

    from wyoming_coda.audio import read_wav_bytes

    pcm, rate, _, _ = read_wav_bytes((speech_dir / "s0.wav").read_bytes())
    mono = np.frombuffer(pcm, "<i2").astype(np.float32) / 32768
    audio = voice_manager.config.audio
    audio.format, audio.sample_rate, audio.channels = "pcm", 16000, 2
    stereo_16k = np.repeat(soxr.resample(mono, rate, 16000), 2)
    ollama.script = [Reply(text="Raw audio heard.")]
    conversation_id = await voice_manager.start_conversation()
    response = await voice_manager.process_voice_input(conversation_id, (stereo_16k * 32767).astype("<i2").tobytes())
    assert response.transcript and response.text_content == "Raw audio heard."
    assert response.audio_data and len(response.audio_data) % 4 == 0 and response.audio_data[:4] != b"RIFF"

    audio.format = "opus"
    writer = sphn.OpusStreamWriter(24000)
    ogg = writer.append_pcm(soxr.resample(mono, rate, 24000).astype(np.float32))
    ogg += writer.append_pcm(np.zeros(24000, dtype=np.float32))  # a second of silence flushes the pages
    ollama.script = [Reply(text="Opus heard.")]
    response = await voice_manager.process_voice_input(conversation_id, ogg)
    assert response.transcript and response.audio_data.startswith(b"OggS")
    decoded = sphn.OpusStreamReader(24000).append_bytes(response.audio_data)
    assert decoded.size > 0


async def test_answer_spoken_after_the_llm_without_parallel_processing(voice_manager, ollama: OllamaDouble) -> None:
    from wyoming_coda.turn.events import AudioOut, TextDelta

    voice_manager.config.external_llm.parallel_processing = False
    ollama.script = [Reply(text="One. Two. Three. Four.", delay=0.05)]
    conversation_id = await voice_manager.start_conversation()
    kinds = [type(e) async for e in voice_manager.process_text(conversation_id, "count", speak=True)]
    assert AudioOut in kinds and TextDelta in kinds
    assert kinds.index(AudioOut) > max(i for i, k in enumerate(kinds) if k is TextDelta)


@pytest.mark.parametrize(("during_speech", "spoken"), [
    (True, "Let me check. It is sunny."),
    (False, "It is sunny."),
])
async def test_words_before_a_tool_call(voice_manager, ollama: OllamaDouble, during_speech: bool,
                                        spoken: str) -> None:
    """With `tool_calling_during_speech` off, a round that ends in a tool call is not spoken."""
    from wyoming_coda.turn.events import TurnDone
    from wyoming_coda.turn.llm_rounds import TurnRequest, run_turn
    from wyoming_coda.turn.tools import LocalTools, Toolbox

    ollama.script = [Reply(text="Let me check. ", tool_calls=[("get_current_time", {})]),
                     Reply(text="It is sunny.")]
    speech = voice_manager.speech()
    request = TurnRequest([{"role": "user", "content": "weather?"}], Toolbox([LocalTools()]), "llm", 3, speech,
                          speak_before_tools=during_speech)
    events = [e async for e in run_turn(voice_manager.llm, request)]
    assert isinstance(events[-1], TurnDone) and events[-1].text == "Let me check. It is sunny."
    assert " ".join(speech.spoken) == spoken  # handed to TTS word by word


async def test_fallback_answer_is_spoken_and_gives_its_row_back(voice_manager, ollama: OllamaDouble) -> None:
    """Adaptive mode right after an LLM failure: an immediate spoken apology, no LLM request."""
    from wyoming_coda.turn.events import AudioOut, TextDelta, TurnDone

    voice_manager.config.mode = "adaptive"
    voice_manager.turns.health.failed()
    conversation_id = await voice_manager.start_conversation()
    events = [e async for e in voice_manager.process_text(conversation_id, "hello", speak=True)]
    assert isinstance(events[0], TextDelta) and "can't reach my language model" in events[0].text
    assert sum(isinstance(e, AudioOut) for e in events) > 2
    assert isinstance(events[-1], TurnDone) and (events[-1].route, events[-1].error) == ("fallback", "llm-unavailable")
    assert not ollama.requests
    assert voice_manager.store.occupancy()["tts"][0] == 0  # the TTS row was given back
