#!/usr/bin/env python3
"""Real-time streaming with the Python API: audio goes in as it arrives (here: a WAV file cut
into 80 ms pieces, paced like a microphone), the transcript and the answer come back as they
are produced, the answer's audio is collected into a WAV file.

    python examples/streaming_voice_example.py question.wav answer.wav
"""

from __future__ import annotations

import asyncio
import io
import wave
from collections.abc import AsyncIterator
from pathlib import Path

from example_args import config, parser

from wyoming_coda import VoiceManager


async def microphone(path: Path, silence_s: float = 1.5) -> AsyncIterator[bytes]:
    """The file as WAV pieces in real time, then silence so the end of speech is heard."""
    with wave.open(str(path), "rb") as wav:
        rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
        pcm = wav.readframes(wav.getnframes())
    pcm += bytes(int(rate * silence_s) * width * channels)
    step = rate * width * channels * 80 // 1000
    for start in range(0, len(pcm), step):
        piece = io.BytesIO()
        with wave.open(piece, "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(width)
            out.setframerate(rate)
            out.writeframes(pcm[start:start + step])
        yield piece.getvalue()
        await asyncio.sleep(0.08)


async def main() -> None:
    args = parser(__doc__.split("\n\n")[0], audio_files=True).parse_args()

    voice_manager = VoiceManager(config(args, mode="hybrid"))
    await voice_manager.initialize()
    audio = bytearray()
    try:
        conversation_id = await voice_manager.start_conversation()
        async for chunk in voice_manager.process_voice_stream(conversation_id, microphone(args.question)):
            if chunk.transcript:
                print(f"You said: {chunk.transcript}\nAnswer: ", end="", flush=True)
            if chunk.text_delta:
                print(chunk.text_delta, end="", flush=True)
            if chunk.audio_data:
                audio += chunk.audio_data  # 24 kHz 16-bit mono: play it here
            if chunk.event == "turn_end":
                break  # one question, one answer
    finally:
        await voice_manager.close()
    print()
    with wave.open(str(args.answer), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(24000)
        wav.writeframes(bytes(audio))
    print(f"Wrote {len(audio) // 2 / 24000:.1f} s of audio to {args.answer}")


if __name__ == "__main__":
    asyncio.run(main())
