"""Tiny random-weight Kyutai checkpoints, built with moshi's own constructors.

Each checkpoint keeps the real layout (config.json, LM and Mimi safetensors, Mimi config,
SentencePiece tokenizer) and the real frame geometry (24 kHz, 1920-sample frames), with every
width shrunk so a model loads in ~0.1 s and steps a frame in a few ms on one CPU thread.
`install_in_hub_cache` lays a checkpoint out as a Hugging Face cache entry under a real repo
id, so the server loads it offline through the same code path as real weights.

`real_config` gives the same layouts at the published sizes (random weights as well): the scale
benchmark builds them on demand, in memory on its device or into a cache directory; the tests
never do.
"""

from __future__ import annotations

import copy
import json
import random
import string
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


# The published checkpoints' dimensions (their config.json; moshi's own defaults for Moshi 7B).
# `real_config(kind)` lays them over the tiny layout of the same kind; with `REAL_MIMI_CONFIG`
# (moshi's Mimi) they give models of the real size and shape with random weights.
REAL_MIMI_CONFIG: dict[str, Any] = copy.deepcopy(loaders._mimi_config)
_REAL_TRUNK: dict[str, Any] = {
    "dim": 2048, "num_heads": 16, "num_layers": 16, "hidden_scale": 4.125, "card": 2048,
    "n_q": 32, "text_card": 8000, "max_period": 100000,
}
_REAL_DEPFORMER: dict[str, Any] = {
    "depformer_dim": 1024, "depformer_num_heads": 16, "depformer_multi_linear": True,
    "depformer_pos_emb": "none", "depformer_weights_per_step": True,
}
REAL_LM: dict[str, dict[str, Any]] = {
    # kyutai/stt-1b-en_fr (+ the 4 end-of-turn heads of its -candle sibling, which this server reads)
    "stt": {**_REAL_TRUNK, "context": 750, "delays": [0] * 33,
            "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0}},
    # kyutai/stt-2.6b-en (no end-of-turn heads)
    "stt-2.6b": {**_REAL_TRUNK, "num_heads": 32, "num_layers": 48, "context": 375, "text_card": 4000,
                 "delays": [0] * 33, "extra_heads_num_heads": 0,
                 "stt_config": {"audio_delay_seconds": 2.5, "audio_silence_prefix_seconds": 1.0}},
    # kyutai/tts-1.6b-en_fr
    "tts": {**_REAL_TRUNK, **_REAL_DEPFORMER, "context": 500, "max_period": 10000, "dep_q": 32,
            "delays": [0, 0] + [2] * 31, "depformer_num_layers": 4, "depformer_dim_feedforward": 3072,
            "depformer_low_rank_embeddings": 128,
            "depformer_weights_per_step_schedule": list(range(8)) + [8] * 8 + [9] * 8 + [10] * 8,
            "conditioners": {
                "speaker_wavs": {"type": "tensor", "tensor": {"dim": 512}},
                "cfg": {"type": "lut", "lut": {"n_bins": 7, "dim": 16, "tokenizer": "noop",
                        "possible_values": ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]}},
                "control": {"type": "lut", "lut": {"dim": 2048, "n_bins": 1, "tokenizer": "noop",
                            "possible_values": ["ok"]}},
            },
            "tts_config": {"audio_delay": 1.28, "second_stream_ahead": 2}},
    # kyutai/moshika-pytorch-bf16 (moshi's default LM configuration)
    "moshi": copy.deepcopy(loaders._lm_kwargs),
}
REAL_SPEAKER_DIM = 512
# Published sizes the built models are checked against: stt-1b "~1B" (Kyutai's README); stt-2.6b
# and tts-1.6b from their bf16 weight files (5,234,275,128 and 3,683,719,712 bytes: the TTS name's
# 1.6 B leaves its depformer out); Moshi the paper's 7.69 B.
PUBLISHED_PARAMETERS = {"stt": 1.0e9, "stt-2.6b": 2.617e9, "tts": 1.84e9, "moshi": 7.69e9}


def real_config(kind: str) -> dict[str, Any]:
    """The checkpoint config of `kind` (stt, stt-2.6b, tts, moshi) at its published size."""
    tiny = {"stt": stt_config, "stt-2.6b": stt_config, "tts": tts_config, "moshi": moshi_config}[kind]()
    config = {**tiny, **copy.deepcopy(REAL_LM[kind])}
    if kind == "tts":
        config["lm_gen_config"] = {"temp": 0.6, "temp_text": 0.6}
    return config


_CORPUS = (
    "turn on the kitchen light please and set the thermostat to twenty degrees\n"
    "what is the weather like today hello world this is coda voice\n"
    "allume la lumiere de la cuisine bonjour le monde\n"
    "open the garage door lock the front door start the vacuum in the living room\n"
    "quelle heure est il ferme les volets du salon merci beaucoup\n"
    "play some jazz music turn the volume down set a timer for five minutes\n"
) * 20


def _large_corpus(vocab_size: int) -> str:
    """Enough distinct random words for a vocabulary of `vocab_size` pieces (plus the phrases)."""
    rng = random.Random(0)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(2 * vocab_size)]
    lines = (" ".join(rng.choices(words, k=12)) for _ in range(3 * vocab_size))
    return _CORPUS + "\n".join(lines)


def write_tokenizer(out_dir: Path, vocab_size: int = 64) -> spm.SentencePieceProcessor:
    """A SentencePiece model with Kyutai's special ids (0 unk, 1 bos, 2 eos, 3 pad); real-size
    vocabularies (thousands of pieces) are learnt from random words."""
    corpus = out_dir / "corpus.txt"
    large = vocab_size > 256
    corpus.write_text(_large_corpus(vocab_size) if large else _CORPUS)
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out_dir / "tokenizer"), vocab_size=vocab_size,
        model_type="bpe" if large else "unigram", character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2,
        pad_id=3, hard_vocab_limit=True, minloglevel=2, normalization_rule_name="identity",
    )
    corpus.unlink()
    (out_dir / "tokenizer.vocab").unlink()
    return spm.SentencePieceProcessor(str(out_dir / "tokenizer.model"))


def lm_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """The LM constructor's arguments in a checkpoint config."""
    return {k: v for k, v in config.items() if k not in _NOT_LM_KWARGS}


def write_checkpoint(
    out_dir: Path, config: dict[str, Any], seed: int = 0, mimi_config: dict[str, Any] | None = None,
    device: str = "cpu", dtype: torch.dtype = torch.float32,
) -> Path:
    """Random Mimi + LM weights and their configs in `out_dir` (built on `device` in `dtype`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    mimi_config = MIMI_CONFIG if mimi_config is None else mimi_config
    # text_card = tokenizer size, so every sampled text id is a valid piece
    config = {**config, "text_card": write_tokenizer(out_dir, config.get("text_card", 64)).vocab_size()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=1))
    (out_dir / "mimi_config.json").write_text(json.dumps(mimi_config, indent=1))
    mimi = loaders.get_mimi(None, mimi_config, device=device)
    save_file({k: v.contiguous() for k, v in mimi.state_dict().items()}, str(out_dir / "mimi.safetensors"))
    del mimi
    lm = loaders.get_moshi_lm(None, lm_kwargs=lm_kwargs(config), device=device, dtype=dtype)
    save_file({k: v.contiguous() for k, v in lm.state_dict().items()}, str(out_dir / "model.safetensors"))
    return out_dir


def checkpoint_info(out_dir: Path, config: dict[str, Any], mimi_config: dict[str, Any] | None = None) -> Any:
    """A moshi CheckpointInfo for `config` with no weight files: its `get_moshi` / `get_mimi`
    build randomly initialised models directly on the device asked for (seconds even at 7B on a
    GPU). Only the tokenizer is written, to `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {**config, "text_card": write_tokenizer(out_dir, config.get("text_card", 64)).vocab_size()}
    return loaders.CheckpointInfo(
        moshi_weights=None, mimi_weights=None, tokenizer=out_dir / "tokenizer.model",  # type: ignore[arg-type]
        lm_config=lm_kwargs(config), raw_config=config, model_type=config["model_type"],
        mimi_config=MIMI_CONFIG if mimi_config is None else mimi_config,
        lm_gen_config=config.get("lm_gen_config", {}), stt_config=config.get("stt_config", {}),
        tts_config=config.get("tts_config", {}), model_id=config.get("model_id", {}),
    )


def write_voice(voices_dir: Path, name: str, seed: int = 0, dim: int = SPEAKER_DIM) -> Path:
    """A speaker embedding file named as in kyutai/tts-voices (`<name>.<sig>@<epoch>.safetensors`)."""
    generator = torch.Generator().manual_seed(seed)
    path = voices_dir / f"{name}.{TTS_MODEL_ID['sig']}@{TTS_MODEL_ID['epoch']}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"speaker_wavs": torch.randn(1, dim, 10, generator=generator)}, str(path))
    return path


def write_pocket_config(out_dir: Path, real: bool = False) -> Path:
    """A Pocket TTS config with no weights (the model is built with random weights): tiny (its
    English layout, every width shrunk) or, `real`, the English model's size; the tokenizer is
    made here."""
    import yaml
    from pocket_tts.utils.config import CONFIGS_DIR

    out_dir.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((CONFIGS_DIR / "english.yaml").read_text())
    for section in (config, config["flow_lm"], config["mimi"]):
        for key in ("weights_path", "weights_path_without_voice_cloning"):
            section.pop(key, None)
    flow = config["flow_lm"]
    table = flow["lookup_table"]
    table.update(n_bins=write_tokenizer(out_dir, table["n_bins"] if real else 64).vocab_size(),
                 tokenizer="sentencepiece", tokenizer_path=str(out_dir / "tokenizer.model"))
    path = out_dir / ("pocket-real.yaml" if real else "pocket-tiny.yaml")
    if real:
        path.write_text(yaml.safe_dump(config))
        return path
    flow["flow"] = {"dim": 32, "depth": 1}
    flow["transformer"].update(d_model=64, num_heads=2, num_layers=1, hidden_scale=2)
    table.update(dim=64)
    mimi = config["mimi"]
    mimi["seanet"].update(dimension=32, n_filters=4)
    mimi["transformer"].update(d_model=32, num_heads=2, num_layers=1, dim_feedforward=64, input_dimension=32,
                               output_dimensions=[32])
    mimi["quantizer"].update(output_dimension=32)
    mimi["outer_dim"] = 32
    path.write_text(yaml.safe_dump(config))
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
