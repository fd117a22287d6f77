#!/usr/bin/env python3
"""Real-time streaming with the Python API: audio goes in as it arrives (here: a WAV file cut
into 80 ms pieces, paced like a microphone), the transcript and the answer come back as they
are produced, the answer's audio is collected into a WAV file.

    python examples/streaming_voice_example.py question.wav answer.wav
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from example_args import config, parser

from wyoming_coda import VoiceManager
from wyoming_coda.audio import read_wav_bytes, wav_bytes


async def microphone(path: Path, silence_s: float = 1.5) -> AsyncIterator[bytes]:
    """The file as WAV pieces in real time, then silence so the end of speech is heard."""
    pcm, rate, width, channels = read_wav_bytes(path.read_bytes())
    pcm += bytes(int(rate * silence_s) * width * channels)
    step = rate * width * channels * 80 // 1000
    for start in range(0, len(pcm), step):
        yield wav_bytes(pcm[start:start + step], rate, width, channels)
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
    args.answer.write_bytes(wav_bytes(bytes(audio), 24000))
    print(f"Wrote {len(audio) // 2 / 24000:.1f} s of audio to {args.answer}")


if __name__ == "__main__":
    asyncio.run(main())
