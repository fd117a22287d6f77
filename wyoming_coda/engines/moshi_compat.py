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
- 8-bit LMs (`moshi.utils.quantize.QLinear`, bitsandbytes LLM.int8: int8 `weight` and a float32
  row scale `weight_scb` per linear layer). moshi's loader casts every float tensor of a q8
  checkpoint (`kyutai/moshika-pytorch-q8`, `quantize: true` in its config) to the model's
  dtype, scales included, which QLinear refuses in bf16: `load_lm` keeps the scales in float32.
  QLinear's forward leaves bitsandbytes' `is_training` set, which on a CPU dequantises the whole
  weight at every call (about 18 times slower than fp32 at 1 B): the inference path is used.
"""

from __future__ import annotations

import dataclasses
import importlib
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


Q8_WEIGHTS_RATIO = 0.52  # an 8-bit Moshi's LM weights against bf16 (8.01 of 15.38 GB, docs/hardware.md)


def is_q8_checkpoint(info: Any) -> bool:
    """Whether a resolved checkpoint holds an 8-bit LM (`quantize: true` in its config)."""
    return bool((info.lm_config or {}).get("quantize"))


def load_lm(info: Any, device: str, dtype: torch.dtype, quantize: bool = False) -> Any:
    """The LM of a resolved checkpoint; in 8 bits for a q8 checkpoint, or when `quantize` asks
    for it (a bf16 checkpoint quantised on load)."""
    stored_q8 = is_q8_checkpoint(info)
    if not (stored_q8 or quantize):
        return info.get_moshi(device=device, dtype=dtype)
    _use_int8_inference()
    if not stored_q8:  # quantised in host memory: the GPU never holds the bf16 weights
        from moshi.utils import quantize as moshi_quantize

        lm = info.get_moshi(device="cpu", dtype=dtype)
        replace: Any = moshi_quantize.replace_linear_with_qlinear  # untyped in moshi
        replace(lm)
        return lm.to(device)
    from moshi.models import loaders
    from safetensors.torch import load_file

    lm = loaders.get_moshi_lm(None, lm_kwargs={**info.lm_config, "quantize": True}, device="meta", dtype=dtype)
    state = {key: value.to(dtype) if value.is_floating_point() and not key.endswith("_scb") else value
             for key, value in load_file(str(info.moshi_weights), device=device).items()}
    lm.load_state_dict(state, assign=True)
    if any(t.is_meta for t in (*lm.parameters(), *lm.buffers())):
        raise UnsupportedCheckpointError(f"the 8-bit checkpoint {info.moshi_weights} lacks some of the model's tensors")
    return lm.eval()


def _use_int8_inference() -> None:
    """QLinear through bitsandbytes' inference matmul (int8 activations and weights)."""
    try:
        bnb: Any = importlib.import_module("bitsandbytes")
    except ImportError as err:
        raise UnsupportedCheckpointError(
            "an 8-bit Moshi needs bitsandbytes: pip install 'wyoming-coda[q8]' (or bitsandbytes)") from err
    from moshi.utils.quantize import QLinear

    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        state = bnb.MatmulLtState()
        state.CB, state.SCB = self.weight, self.weight_scb
        state.has_fp16_weights = False
        state.is_training = False
        out: torch.Tensor = bnb.matmul(x.half(), state.CB, state=state)
        return out

    QLinear.forward = forward  # type: ignore[method-assign]
