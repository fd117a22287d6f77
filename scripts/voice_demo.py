#!/usr/bin/env python3
"""Talk to a running Coda Voice server: a WAV file (or the microphone) in, the transcript, the
answer and the latency of each stage out, the spoken answer written to a WAV file.

    python scripts/voice_demo.py --wav question.wav
    python scripts/voice_demo.py --mic 5 --uri tcp://voicebox:10300
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import coda_client as coda

from wyoming_coda.audio import wav_bytes


def record(seconds: float, rate: int = 16000) -> bytes:
    """`seconds` of the default microphone as WAV bytes (needs the sounddevice package)."""
    try:
        import sounddevice  # type: ignore[import-not-found]
    except ImportError:
        raise SystemExit("error: --mic needs the sounddevice package (pip install sounddevice)") from None
    try:
        frames = sounddevice.rec(int(seconds * rate), samplerate=rate, channels=1, dtype="int16")
        sounddevice.wait()
    except Exception as err:  # noqa: BLE001 - sounddevice raises its own PortAudioError and OSError
        raise SystemExit(f"error: no microphone to record from ({err})") from None
    return wav_bytes(frames.tobytes(), rate)


async def main(args: argparse.Namespace) -> int:
    server = coda.server_from(args)
    audio = args.wav.read_bytes() if args.wav else record(args.mic)
    transcript, stt_s = await coda.transcribe(server, audio, args.language)
    print(f"you said:   {transcript}")
    print("answer:     ", end="", flush=True)
    answer = await coda.converse(server, transcript, {"conversation_id": args.conversation_id},
                                 on_text=lambda text: print(text, end="", flush=True))
    print()
    if not answer.handled:
        print(f"the server could not answer: {answer.text}", file=sys.stderr)
        return 1
    wav, tts_first_s = await coda.synthesize(server, answer.text, args.voice)
    args.out.write_bytes(wav)
    print(f"latency:    STT final {stt_s * 1000:.0f} ms after the audio ended, LLM first text "
          f"{(answer.first_text_s or answer.total_s) * 1000:.0f} ms, whole answer {answer.total_s * 1000:.0f} ms, "
          f"TTS first audio {tts_first_s * 1000:.0f} ms")
    print(f"wrote {args.out} ({len(wav)} bytes)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", type=Path, help="a WAV file with the question (any rate, 16-bit)")
    source.add_argument("--mic", type=float, metavar="SECONDS", help="record this long from the microphone")
    parser.add_argument("--out", type=Path, default=Path("answer.wav"), help="where to write the spoken answer")
    parser.add_argument("--voice", help="a TTS voice listed by the server")
    parser.add_argument("--language", help="language of the question (default: the model's first)")
    parser.add_argument("--conversation-id", default="voice-demo", help="continue this conversation")
    coda.add_server_arguments(parser)
    coda.run(main(parser.parse_args()))
