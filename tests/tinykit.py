"""Tiny random-weight Kyutai checkpoints, built with moshi's own constructors.

Each checkpoint keeps the real layout (config.json, LM and Mimi safetensors, Mimi config,
SentencePiece tokenizer) and the real frame geometry (24 kHz, 1920-sample frames), with every
width shrunk so a model loads in ~0.1 s and steps a frame in a few ms on one CPU thread.
`install_in_hub_cache` lays a checkpoint out as a Hugging Face cache entry under a real repo
id, so the server loads it offline through the same code path as real weights.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
from moshi.models import loaders
from safetensors.torch import save_file

MIMI_DIM = 32
MIMI_CONFIG: dict[str, Any] = copy.deepcopy(loaders._mimi_config)
MIMI_CONFIG["seanet"].update(dimension=MIMI_DIM, n_filters=4)
MIMI_CONFIG["quantizer"].update(
    dimension=16, n_q=8, bins=64, input_dimension=MIMI_DIM, output_dimension=MIMI_DIM
)
MIMI_CONFIG["transformer"].update(
    d_model=MIMI_DIM, num_heads=2, num_layers=1, dim_feedforward=64,
    input_dimension=MIMI_DIM, output_dimensions=[MIMI_DIM],
)
SPEAKER_DIM = 16
TTS_MODEL_ID = {"sig": "tiny0000", "epoch": 0}

_FILE_NAMES = {
    "moshi_name": "model.safetensors",
    "mimi_name": "mimi.safetensors",
    "mimi_config_name": "mimi_config.json",
    "tokenizer_name": "tokenizer.model",
}
_NOT_LM_KWARGS = set(_FILE_NAMES) | {"model_type", "lm_gen_config", "stt_config", "tts_config", "model_id",
                                     "rag_token_id"}
_BASE_LM: dict[str, Any] = {
    "dim": 64, "num_heads": 4, "num_layers": 2, "hidden_scale": 4.125,
    "card": MIMI_CONFIG["quantizer"]["bins"], "existing_text_padding_id": 3,
    "causal": True, "layer_scale": None, "context": 100, "max_period": 10000,
    "gating": "silu", "norm": "rms_norm_f32", "positional_embedding": "rope",
}
_DEPFORMER: dict[str, Any] = {
    "depformer_dim": 32, "depformer_dim_feedforward": 64, "depformer_num_heads": 2,
    "depformer_num_layers": 1, "depformer_layer_scale": None, "depformer_multi_linear": True,
    "depformer_context": 8, "depformer_max_period": 10000, "depformer_gating": "silu",
    "depformer_pos_emb": "none", "depformer_weights_per_step": True,
}


def stt_config(n_q: int = 8) -> dict[str, Any]:
    """Shaped like kyutai/stt-1b-en_fr: audio in, text out, 4 end-of-turn heads."""
    return {
        **_BASE_LM, **_FILE_NAMES, "model_type": "stt", "n_q": n_q, "dep_q": 0,
        "delays": [0] * (n_q + 1), "extra_heads_num_heads": 4, "extra_heads_dim": 6,
        "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
        "lm_gen_config": {"temp": 0.0, "temp_text": 0.0},
    }


def tts_config(n_q: int = 8) -> dict[str, Any]:
    """Shaped like kyutai/tts-1.6b-en_fr: text (+ lookahead stream) in, audio out, speaker
    cross-attention and CFG conditioning."""
    lut = {"type": "lut", "lut": {"dim": 16, "tokenizer": "noop"}}
    control = copy.deepcopy(lut)
    control["lut"].update(n_bins=2, possible_values=["ok", "bad"])
    cfg = copy.deepcopy(lut)
    cfg["lut"].update(n_bins=7, possible_values=["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"])
    return {
        **_BASE_LM, **_DEPFORMER, **_FILE_NAMES, "model_type": "tts", "n_q": n_q, "dep_q": n_q,
        "delays": [0, 0] + [2] * (n_q - 1), "demux_second_stream": True,
        "depformer_low_rank_embeddings": 16, "cross_attention": True,
        "conditioners": {
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": SPEAKER_DIM}},
            "control": control,
            "cfg": cfg,
        },
        "fuser": {"cross": ["speaker_wavs"], "sum": ["control", "cfg"],
                  "cross_attention_pos_emb": True, "cross_attention_pos_emb_scale": 1.0},
        "tts_config": {"audio_delay": 0.16, "second_stream_ahead": 2},
        "model_id": TTS_MODEL_ID,
    }


def moshi_config(k: int = 4) -> dict[str, Any]:
    """Shaped like kyutai/moshika-pytorch-bf16: text + k Moshi + k user audio codebooks."""
    return {
        **_BASE_LM, **_DEPFORMER, **_FILE_NAMES, "model_type": "moshi", "n_q": 2 * k, "dep_q": k,
        "delays": [0, 0] + [1] * (k - 1) + [0] + [1] * (k - 1),
        "lm_gen_config": {"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25},
    }


_CORPUS = (
    "turn on the kitchen light please and set the thermostat to twenty degrees\n"
    "what is the weather like today hello world this is coda voice\n"
    "allume la lumiere de la cuisine bonjour le monde\n"
    "open the garage door lock the front door start the vacuum in the living room\n"
    "quelle heure est il ferme les volets du salon merci beaucoup\n"
    "play some jazz music turn the volume down set a timer for five minutes\n"
) * 20


def write_tokenizer(out_dir: Path, vocab_size: int = 64) -> spm.SentencePieceProcessor:
    """A SentencePiece model with Kyutai's special ids (0 unk, 1 bos, 2 eos, 3 pad)."""
    corpus = out_dir / "corpus.txt"
    corpus.write_text(_CORPUS)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size,
        model_type="unigram", character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        hard_vocab_limit=True, minloglevel=2, normalization_rule_name="identity",
    )
    corpus.unlink()
    (out_dir / "tokenizer.vocab").unlink()
    return spm.SentencePieceProcessor(str(out_dir / "tokenizer.model"))


def write_checkpoint(out_dir: Path, config: dict[str, Any], seed: int = 0) -> Path:
    """Random Mimi + LM weights and their configs in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    # text_card = tokenizer size, so every sampled text id is a valid piece
    config = {**config, "text_card": write_tokenizer(out_dir).vocab_size()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=1))
    (out_dir / "mimi_config.json").write_text(json.dumps(MIMI_CONFIG, indent=1))
    mimi = loaders.get_mimi(None, MIMI_CONFIG, device="cpu")
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(out_dir / "mimi.safetensors"))
    lm_kwargs = {k: v for k, v in config.items() if k not in _NOT_LM_KWARGS}
    lm = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs, device="cpu", dtype=torch.float32)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(out_dir / "model.safetensors"))
    return out_dir


def write_voice(voices_dir: Path, name: str, seed: int = 0) -> Path:
    """A speaker embedding file named as in kyutai/tts-voices (`<name>.<sig>@<epoch>.safetensors`)."""
    generator = torch.Generator().manual_seed(seed)
    path = voices_dir / f"{name}.{TTS_MODEL_ID['sig']}@{TTS_MODEL_ID['epoch']}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"speaker_wavs": torch.randn(1, SPEAKER_DIM, 10, generator=generator)}, str(path))
    return path


def install_in_hub_cache(src_dir: Path, cache_dir: Path, repo_id: str) -> Path:
    """Lay `src_dir` out as a Hugging Face hub cache entry for `repo_id` (revision main)."""
    revision = "0" * 40
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    for path in src_dir.rglob("*"):
        target = snapshot / path.relative_to(src_dir)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.symlink_to(path.resolve())
    return snapshot


TINY_REPOS = {
    "stt": ("kyutai/stt-1b-en_fr", stt_config),
    "tts": ("kyutai/tts-1.6b-en_fr", tts_config),
    "moshi": ("kyutai/moshika-pytorch-bf16", moshi_config),
    "moshiko": ("kyutai/moshiko-pytorch-bf16", moshi_config),  # a second Moshi voice
    # a MoshiRAG-style checkpoint: a plain Moshi that declares its retrieval trigger token
    "moshirag": ("kyutai/moshika-rag-pytorch-bf16", lambda: {**moshi_config(), "rag_token_id": 5}),
}
TINY_VOICES = ("expresso/ex03-ex01_happy_001_channel1_334s.wav", "vctk/p225_023.wav",
               "cml-tts/fr/2465_1943_000152-0002.wav")


def build_tiny_hub(root: Path, cache_dir: Path) -> dict[str, Path]:
    """Write every tiny checkpoint and voice under `root`, registered in `cache_dir` under the
    real repo ids. Returns {kind: checkpoint directory} (plus "voices")."""
    built: dict[str, Path] = {}
    for kind, (repo_id, make_config) in TINY_REPOS.items():
        built[kind] = write_checkpoint(root / kind, make_config())
        install_in_hub_cache(built[kind], cache_dir, repo_id)
    voices = root / "voices"
    for seed, name in enumerate(TINY_VOICES):
        write_voice(voices, name, seed)
    install_in_hub_cache(voices, cache_dir, "kyutai/tts-voices")
    built["voices"] = voices
    return built
