#!/usr/bin/env python3
"""Basic voice conversation with the Python API: a WAV question in, the answer as text and as a
WAV file out (the spec's Quick Start).

    python examples/voice_conversation_example.py question.wav answer.wav
"""

from __future__ import annotations

import asyncio

from example_args import config, parser

from wyoming_coda import VoiceManager


async def main() -> None:
    args = parser(__doc__.split("\n\n")[0], audio_files=True).parse_args()

    voice_manager = VoiceManager(config(args, mode="hybrid"))
    await voice_manager.initialize()
    try:
        conversation_id = await voice_manager.start_conversation()
        response = await voice_manager.process_voice_input(conversation_id, args.question.read_bytes())
        print(f"You said: {response.transcript}")
        print(f"Response: {response.text_content}")
        print("Latency: " + ", ".join(f"{stage} {ms:.0f} ms" for stage, ms in response.latency_ms.items()))
        args.answer.write_bytes(response.audio_data)
    finally:
        await voice_manager.close()


if __name__ == "__main__":
    asyncio.run(main())
