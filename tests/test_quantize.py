"""Moshi in 8 bits (moshi's QLinear through bitsandbytes, which also runs on a CPU): the tiny
Moshi quantised on load, and a q8 checkpoint as Kyutai publishes them (int8 weights, float32
row scales, `quantize: true` in its config) loaded in bf16; both step in the engine and speak,
in about half the memory of bf16 linear layers."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.test_duplex import speech_24k

FRAME = 1920


def weight_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))


def linear_bytes(module: torch.nn.Module) -> int:
    """The bytes of the layers quantisation touches (plain or 8-bit linear layers)."""
    from moshi.utils.quantize import QLinear

    return sum(weight_bytes(m) for m in module.modules() if isinstance(m, torch.nn.Linear | QLinear))


async def speak(stack: Any, audio: np.ndarray) -> list[Any]:
    """Moshi's outputs for `audio`, one 80 ms frame a step, through the server's engine."""
    from wyoming_coda.engines.moshi import MoshiEngine

    engine = MoshiEngine(stack, 1, ThreadPoolExecutor(1))
    session = await engine.open()
    try:
        reader = session.outputs()
        outputs = []
        for i in range(len(audio) // FRAME):
            session.feed(audio[i * FRAME:(i + 1) * FRAME])
            outputs.append(await anext(reader))
        return outputs
    finally:
        await session.close()
        await engine.close()


def checkpoint(name: str = "kyutai/moshika-pytorch-bf16") -> Any:
    from wyoming_coda.models.checkpoints import resolve_checkpoint

    return resolve_checkpoint(name, "moshi")


async def test_moshi_quantised_on_load_steps_in_half_the_memory(tiny_hub, speech_dir: Path) -> None:
    from moshi.utils.quantize import QLinear

    from wyoming_coda.engines.lm import LMStack

    plain = LMStack.load(checkpoint(), "cpu", torch.bfloat16)
    q8 = LMStack.load(checkpoint(), "cpu", torch.bfloat16, quantize=True)
    layers = [m for m in q8.lm.modules() if isinstance(m, QLinear)]
    assert layers and not any(type(m) is torch.nn.Linear for m in q8.lm.modules())
    assert all(m.weight.dtype == torch.int8 and m.weight_scb.dtype == torch.float32 for m in layers)
    assert linear_bytes(q8.lm) < 0.6 * linear_bytes(plain.lm)  # int8 + one float32 scale per row, against bf16

    outputs = await speak(q8, speech_24k(speech_dir / "s0.wav")[: 30 * FRAME])
    spoken = [o.pcm for o in outputs if o.pcm is not None]
    assert spoken and all(np.isfinite(p).all() for p in spoken)


async def test_a_q8_checkpoint_loads_in_bf16_with_float_scales(tiny_hub, tmp_path: Path, speech_dir: Path) -> None:
    """moshi's own loader casts the row scales to bf16 with everything else, which its QLinear
    (and bitsandbytes) refuse at the first step."""
    from moshi.utils.quantize import replace_linear_with_qlinear
    from safetensors.torch import save_file

    from wyoming_coda.engines.lm import LMStack

    source = checkpoint()
    folder = tmp_path / "moshika-q8"
    shutil.copytree(Path(source.moshi_weights).parent, folder)
    lm = source.get_moshi(device="cpu", dtype=torch.float32)
    replace_linear_with_qlinear(lm)  # as Kyutai's export of its q8 checkpoints
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(folder / "model.q8.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "moshi_name": "model.q8.safetensors", "quantize": True}))
    info = checkpoint(str(folder))

    moshi_own = info.get_moshi(device="cpu", dtype=torch.bfloat16)  # the scales cast to bf16 with the rest
    assert {t.dtype for k, t in moshi_own.state_dict().items() if k.endswith("_scb")} == {torch.bfloat16}
    stack = LMStack.load(info, "cpu", torch.bfloat16)  # no quantize asked: the checkpoint says it
    scales = [t for k, t in stack.lm.state_dict().items() if k.endswith("_scb")]
    assert scales and all(t.dtype == torch.float32 for t in scales)
    outputs = await speak(stack, speech_24k(speech_dir / "s0.wav")[: 30 * FRAME])
    assert any(o.pcm is not None for o in outputs)


def test_the_memory_budget_counts_a_moshi_quantised_on_load_in_8_bits(tiny_hub) -> None:
    """A bf16 checkpoint asked for in 8 bits is sized at about half its file against
    `moshi.vram_allocation`: the budget that fits the 8-bit model is not refused for the bf16 file."""
    import dataclasses

    from wyoming_coda.config import VoiceConfig
    from wyoming_coda.engines.moshi_compat import Q8_WEIGHTS_RATIO
    from wyoming_coda.models.store import ModelStore, VramBudgetError

    info = checkpoint()
    lm_file, mimi_file = (Path(p).stat().st_size for p in (info.moshi_weights, info.mimi_weights))
    budget = int(lm_file * Q8_WEIGHTS_RATIO) + mimi_file + 1  # the 8-bit model's, under the bf16 file's
    plain = VoiceConfig(mode="adaptive", device="cpu")
    for quantize, refused in ((False, True), (True, False)):
        config = dataclasses.replace(plain, moshi=dataclasses.replace(plain.moshi, quantize=quantize))
        store = ModelStore(config)
        slot = store.slots["moshi"]
        slot.budget_bytes = budget
        if refused:
            with pytest.raises(VramBudgetError, match="vram_allocation budget"):
                store._check_budget(slot, info)
        else:
            store._check_budget(slot, info)
            assert slot.weights_bytes == budget - 1
