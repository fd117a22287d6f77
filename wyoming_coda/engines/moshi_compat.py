"""The one place that touches moshi internals (private attributes and loaders whose shape is
not a public API). Written against moshi 0.2.13, the version `script/setup` installs; when
moshi changes, this module is what to check.

- `LMGen._streaming_state.condition_sum` / `.condition_cross`: per-row conditioning of a
  streaming LM (a TTS row's voice), set without restarting the other rows.
- `StreamingMultiheadAttention.update_streaming_cross_attention_src`: re-reads the cross
  attention source after a row's speaker embedding changed.
- MoshiRAG checkpoints (`kyutai/moshika-rag-*`): their `config.json` names a retrieval trigger
  (`rag_token_id`, an ordinary text token) and a reference stream (a `multi_arc_encoder`
  conditioner summed into every step) that only Kyutai's moshi-rag build of the package loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

RETRIEVAL_TOKEN_KEY = "rag_token_id"


class UnsupportedCheckpointError(Exception):
    """A checkpoint this moshi package cannot load (the message says what it needs)."""


def retrieval_trigger(info: Any) -> tuple[Any, int | None]:
    """A MoshiRAG checkpoint's retrieval trigger token, and the checkpoint as this moshi
    package can build it (the key taken out of the LM's arguments where the package does not
    know it); (info, None) for a plain Moshi."""
    from moshi.models.lm import LMGen

    config = dict(info.lm_config or {})
    if RETRIEVAL_TOKEN_KEY not in config:
        return info, None
    token = int(config.pop(RETRIEVAL_TOKEN_KEY))
    if hasattr(LMGen, "update_streaming_sum_tensors"):  # Kyutai's moshi-rag build: it loads all of it
        return info, token
    conditioners = config.get("conditioners") or {}
    if any(isinstance(c, dict) and c.get("type") == "multi_arc_encoder" for c in conditioners.values()):
        raise UnsupportedCheckpointError(
            "this is a MoshiRAG checkpoint with a retrieved-reference stream (multi_arc_encoder): the installed "
            "moshi package cannot build it; install Kyutai's moshi-rag build of moshi, or use a plain Moshi "
            "(kyutai/moshika-pytorch-bf16), whose utterances the transcript router sends to the LLM")
    return dataclasses.replace(info, lm_config=config), token


def cross_attention_modules(lm: Any) -> list[Any]:
    """The LM's cross-attention layers whose source can be replaced while streaming."""
    return [
        module
        for module in lm.modules()
        if getattr(module, "cross_attention", False) and hasattr(module, "update_streaming_cross_attention_src")
    ]


def set_row_conditions(
    lm_gen: Any, modules: list[Any], row: int, total: torch.Tensor | None, cross: torch.Tensor | None
) -> bool:
    """Set one row's summed and cross-attention conditions; False when `cross` does not fit
    the model's cross-attention source (a voice embedding made for another model)."""
    state = lm_gen._streaming_state
    if total is not None and state.condition_sum is not None:
        state.condition_sum[row] = total
    if cross is not None and state.condition_cross is not None:
        if cross.shape != state.condition_cross[row].shape:
            return False
        state.condition_cross[row] = cross
        for module in modules:
            if module._streaming_state is not None:
                module.update_streaming_cross_attention_src(state.condition_cross)
    return True


def load_tts_model(info: Any, device: str, dtype: torch.dtype, voices: str) -> Any:
    """moshi's `TTSModel` for a resolved checkpoint."""
    from moshi.models.tts import TTSModel

    return TTSModel.from_checkpoint_info(info, n_q=info.lm_config["n_q"], voice_repo=voices, device=device,
                                         dtype=dtype)
