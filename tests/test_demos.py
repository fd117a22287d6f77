"""The demo scripts (scripts/) against a real server, the examples (examples/) and the README's
Python API snippet as written — all on tiny checkpoints, the LLM being the Ollama API test
double. Each is run as a user would run it: a separate Python process."""

from __future__ import annotations

import asyncio
import re
import sys
import wave
from pathlib import Path

import pytest

from tests.ollama_double import OllamaDouble, Reply
from tests.serverproc import ROOT, ServerProcess, free_port

SCRIPTS = ROOT / "scripts"
EXAMPLES = ROOT / "examples"


async def run(path: Path, *args: str, cwd: Path | None = None, timeout: float = 120) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(path), *args, cwd=cwd or ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def server_args(server: ServerProcess) -> list[str]:
    return ["--uri", f"tcp://127.0.0.1:{server.port}", "--http-url", f"http://127.0.0.1:{server.http_port}",
            "--token", server.token]


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


DEMOS = ["voice_demo.py", "voice_websocket_demo.py", "hybrid_voice_demo.py", "benchmark_voice_latency.py",
         "test_vram_allocation.py"]


@pytest.mark.parametrize("name", DEMOS)
async def test_demo_help_and_unreachable_server(name: str, speech_dir: Path) -> None:
    code, out, _ = await run(SCRIPTS / name, "--help")
    assert code == 0 and "--uri" in out and "usage:" in out
    port = free_port()  # nothing listens there
    args = {"voice_demo.py": ["--wav", str(speech_dir / "s0.wav")], "hybrid_voice_demo.py": ["--text", "hi"]}
    code, out, err = await run(SCRIPTS / name, *args.get(name, []), "--uri", f"tcp://127.0.0.1:{port}",
                               "--http-url", f"http://127.0.0.1:{port}")
    assert code == 2, (out, err)
    assert err.startswith("error: cannot reach the") and str(port) in err and "Traceback" not in err
    if name == "voice_demo.py":
        code, _, err = await run(SCRIPTS / name, "--wav", str(ROOT / "README.md"), "--uri", f"tcp://127.0.0.1:{port}")
        assert code == 1 and err.startswith("error: the audio is not a readable WAV file")


async def test_voice_demo(start_server, ollama: OllamaDouble, speech_dir: Path, tmp_path: Path) -> None:
    server = start_server("--llm-url", ollama.url)
    ollama.script = [Reply(text="The kitchen light is on now.")]
    code, out, err = await run(SCRIPTS / "voice_demo.py", "--wav", str(speech_dir / "s0.wav"),
                               "--out", str(tmp_path / "answer.wav"), *server_args(server))
    assert code == 0, err
    heard = re.search(r"you said:\s+(.*)", out).group(1)
    assert heard and ollama.requests[0]["messages"][-1]["content"] == heard  # what the STT heard went on
    assert "answer:     The kitchen light is on now." in out
    assert re.search(r"STT final \d+ ms .* LLM first text \d+ ms, whole answer \d+ ms, TTS first audio \d+ ms", out)
    assert wav_seconds(tmp_path / "answer.wav") > 0.5


async def test_websocket_demo_prints_live_events(start_server, ollama: OllamaDouble) -> None:
    from tests.test_handle import handle_turn

    server = start_server("--llm-url", ollama.url)
    demo = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPTS / "voice_websocket_demo.py"), *server_args(server), "--seconds", "6",
        "--metrics-interval", "1", "--skip-audio", cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert demo.stdout is not None
    lines: list[str] = []
    while not lines or " metrics " not in lines[-1]:  # its first snapshot: the demo is subscribed
        line = await asyncio.wait_for(demo.stdout.readline(), 30)
        assert line, "".join(lines)
        lines.append(line.decode())
    ollama.script = [Reply(text="Hello from the test.")]
    await handle_turn(server, "hello", context={"conversation_id": "ws-demo"})
    rest, err = await asyncio.wait_for(demo.communicate(), 60)
    out = "".join(lines) + rest.decode()
    assert demo.returncode == 0, err.decode()
    assert re.search(r"conversation_start\s+.*ws-demo", out)
    assert re.search(r"response_generated\s+.*Hello from the test.", out)
    assert re.search(r"metrics\s+1 conversations, 1 turns", out)


async def test_hybrid_demo_tool_call_and_route(start_server, ollama: OllamaDouble, tmp_path: Path) -> None:
    server = start_server("--llm-url", ollama.url)
    ollama.script = [Reply(tool_calls=[("get_room_temperature", {"room": "kitchen"})]),
                     Reply(text="It is 23 degrees in the kitchen.")]
    code, out, err = await run(SCRIPTS / "hybrid_voice_demo.py", "--text", "How warm is the kitchen?",
                               "--out", str(tmp_path / "answer.wav"), *server_args(server))
    assert code == 0, err
    assert "route:     llm (hybrid mode)" in out
    assert "tool call: get_room_temperature({'room': 'kitchen'}) run by this client" in out
    assert "answer:    It is 23 degrees in the kitchen." in out
    tool_message = next(m for m in ollama.requests[1]["messages"] if m["role"] == "tool")
    assert '"temperature_c": 23.0' in tool_message["content"]
    assert wav_seconds(tmp_path / "answer.wav") > 0.5


async def test_latency_benchmark_and_memory_report(start_server, ollama: OllamaDouble) -> None:
    server = start_server("--llm-url", ollama.url)
    code, out, err = await run(SCRIPTS / "benchmark_voice_latency.py", "--rounds", "2", *server_args(server))
    assert code == 0, err
    for stage in ("TTS first audio", "STT final after speech", "LLM first text", "LLM whole answer"):
        assert re.search(rf"{stage}\s+median\s+\d+ ms\s+p95\s+\d+ ms", out), out
    code, out, err = await run(SCRIPTS / "test_vram_allocation.py", *server_args(server))
    assert code == 0, err
    assert "device: cpu" in out and re.search(r"^stt\s+ready\s+-\s+\d+\.\d+ GiB", out, re.MULTILINE)
    assert re.search(r"^external_llm\s+external\s+.*20 GiB", out, re.MULTILINE)


def example_args(ollama: OllamaDouble, tmp_path: Path) -> list[str]:
    return ["--llm-url", ollama.url, "--device", "cpu", "--data-dir", str(tmp_path / "data")]


async def test_voice_conversation_and_streaming_examples(
    tiny_hub, ollama: OllamaDouble, speech_dir: Path, tmp_path: Path
) -> None:
    ollama.script = [Reply(text="Sure, the light is on."), Reply(text="Streaming works.")]
    code, out, err = await run(EXAMPLES / "voice_conversation_example.py", str(speech_dir / "s0.wav"),
                               str(tmp_path / "a.wav"), *example_args(ollama, tmp_path))
    assert code == 0, err
    assert "Response: Sure, the light is on." in out and re.search(r"Latency: .*stt \d+ ms", out), out
    assert wav_seconds(tmp_path / "a.wav") > 0.5
    code, out, err = await run(EXAMPLES / "streaming_voice_example.py", str(speech_dir / "s1.wav"),
                               str(tmp_path / "b.wav"), *example_args(ollama, tmp_path))
    assert code == 0, err
    assert re.search(r"You said: .+\nAnswer: Streaming works\.", out), out
    assert wav_seconds(tmp_path / "b.wav") >= 0.08  # whole 80 ms frames (the random tiny voice's length varies)


async def test_hybrid_reasoning_and_tools_examples(tiny_hub, ollama: OllamaDouble, tmp_path: Path) -> None:
    ollama.script = [Reply(text="Because of Rayleigh scattering.")]
    code, out, err = await run(EXAMPLES / "hybrid_reasoning_example.py", "hi there",
                               "why is the sky blue and not green?", *example_args(ollama, tmp_path))
    assert code == 0, err
    assert re.search(r"> hi there\n.+\n  route: moshi", out), out  # chit-chat: Moshi's (tiny, random) words
    assert re.search(r"Because of Rayleigh scattering\.\n  route: llm", out), out

    ollama.script = [Reply(tool_calls=[("start_sprinkler", {"zone": "roses", "minutes": 10})]),
                     Reply(text="The roses get ten minutes of water.")]
    code, out, err = await run(EXAMPLES / "voice_tools_example.py", "--text", "Water the roses for ten minutes.",
                               *example_args(ollama, tmp_path))
    assert code == 0, err
    assert "[sprinkler] watering roses for 10 min" in out
    assert "Answer: The roses get ten minutes of water." in out and "Sprinklers running: {'roses': 10}" in out


async def test_readme_python_api_runs_as_written(tiny_hub, speech_dir: Path, tmp_path: Path) -> None:
    """The README's snippet, unchanged: default Ollama address, the spec's model names."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = re.search(r"### Python API\n\n```python\n(.*?)```", readme, re.DOTALL).group(1)
    (tmp_path / "audio_input.wav").write_bytes((speech_dir / "s0.wav").read_bytes())
    (tmp_path / "snippet.py").write_text(
        "import ast, asyncio, sys\n"
        "code = compile(open(sys.argv[1]).read(), 'README', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
        "result = eval(code, {'__name__': '__main__'})\n"
        "if asyncio.iscoroutine(result):\n    asyncio.run(result)\n")
    (tmp_path / "readme.py").write_text(snippet)
    double = OllamaDouble(models=("llama3.1:70b-instruct-q4_K_M",))
    try:
        await double.start(port=11434)  # the default address the snippet uses
    except OSError:
        pytest.skip("port 11434 is taken on this machine")
    double.script = [Reply(text="Hello from the README.")]
    try:
        code, out, err = await run(tmp_path / "snippet.py", str(tmp_path / "readme.py"), cwd=tmp_path)
    finally:
        await double.close()
    assert code == 0, err
    assert out.strip().endswith("Hello from the README.")
