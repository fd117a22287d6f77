"""Locate Kyutai checkpoints (a Hugging Face repo id or a local directory) with clear errors.

Every file is resolved here first and handed to moshi's `CheckpointInfo` as a local path, so
moshi never guesses ("Assuming this is a Moshi 7B") and a missing file is reported by name,
with the way to provide it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from moshi.models.loaders import CheckpointInfo

KINDS = ("stt", "tts", "moshi")
CLI_FLAG = {"stt": "--stt-model", "tts": "--tts-model", "moshi": "--moshi-model"}

# Files of a Moshi repository without config.json (moshi's own defaults, as in moshiko/moshika).
LEGACY_MOSHI_FILES = {
    "moshi_name": "model.safetensors",
    "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
    "tokenizer_name": "tokenizer_spm_32k_3.model",
}

_LANGUAGES = {
    "kyutai/stt-1b-en_fr": ["en", "fr"],
    "kyutai/stt-2.6b-en": ["en"],
    "kyutai/tts-1.6b-en_fr": ["en", "fr"],
    "kyutai/moshiko-pytorch-bf16": ["en"],
    "kyutai/moshika-pytorch-bf16": ["en"],
}


class ModelNotFoundError(Exception):
    """Weights or a file of a checkpoint are missing; the message says how to provide them."""


def model_languages(source: str) -> list[str]:
    """Languages of a model, from the known Kyutai repos or the `_en_fr` style suffix."""
    if source in _LANGUAGES:
        return list(_LANGUAGES[source])
    name = Path(source.rstrip("/")).name.lower()
    suffix = name.rsplit("-", 1)[-1]
    langs = [part for part in suffix.split("_") if len(part) == 2 and part.isalpha()]
    return langs or ["en"]


def is_local(source: str) -> bool:
    """True when `source` names a directory rather than a Hugging Face repo id."""
    return source.startswith(("/", ".", "~")) or Path(source).expanduser().is_dir()


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache in use (HF_HUB_CACHE / HF_HOME aware)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


@dataclass
class _Source:
    """Resolves file names inside one checkpoint source."""

    source: str
    kind: str

    @property
    def local_dir(self) -> Path | None:
        return Path(self.source).expanduser() if is_local(self.source) else None

    def _how_to_provide(self) -> str:
        return (
            f"Provide the weights either by downloading the repository once with internet "
            f"access (`hf download {self.source}`, stored in {hub_cache_dir()}) or by passing "
            f"a local directory that holds the checkpoint files: {CLI_FLAG[self.kind]} DIR"
        )

    def get(self, filename: str, optional: bool = False) -> Path | None:
        """Local path of `filename`, downloading it when the source is a hub repo."""
        local = self.local_dir
        if local is not None:
            if not local.is_dir():
                raise ModelNotFoundError(
                    f"{self.kind} model directory {local} does not exist ({CLI_FLAG[self.kind]})"
                )
            path = local / filename
            if path.is_file():
                return path
            if optional:
                return None
            raise ModelNotFoundError(
                f"{self.kind} model directory {local} has no {filename}; a Kyutai checkpoint "
                f"directory holds config.json, the LM weights, the Mimi weights and the tokenizer"
            )
        return self._download(filename, optional)

    def _download(self, filename: str, optional: bool) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )

        try:
            return Path(hf_hub_download(self.source, filename))
        except GatedRepoError:
            raise ModelNotFoundError(
                f"{self.kind} model {self.source} is gated on Hugging Face: accept its terms "
                f"and log in (`hf auth login`), or use a local directory ({CLI_FLAG[self.kind]})"
            ) from None
        except RepositoryNotFoundError:
            raise ModelNotFoundError(
                f"{self.kind} model {self.source} is not a Hugging Face repository that can be "
                f"reached; check the repo id or pass a local directory ({CLI_FLAG[self.kind]})"
            ) from None
        except LocalEntryNotFoundError:  # before EntryNotFoundError: it is a subclass
            reason = "offline mode" if os.environ.get("HF_HUB_OFFLINE") else "no connection"
            raise ModelNotFoundError(
                f"{self.kind} model {self.source}: {filename} is not in the Hugging Face cache "
                f"and could not be downloaded ({reason}). {self._how_to_provide()}"
            ) from None
        except EntryNotFoundError:
            if optional:
                return None
            raise ModelNotFoundError(
                f"{self.kind} model {self.source} has no file {filename}"
            ) from None


def resolve_checkpoint(source: str, kind: str) -> CheckpointInfo:
    """Resolve every file of a Kyutai checkpoint and return moshi's CheckpointInfo for it."""
    import json

    from moshi.models.loaders import CheckpointInfo

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}")
    files = _Source(source, kind)
    config_path = files.get("config.json", optional=(kind == "moshi"))
    config = json.loads(config_path.read_text()) if config_path else dict(LEGACY_MOSHI_FILES)
    model_type = config.get("model_type", "moshi")
    if model_type != kind:
        raise ModelNotFoundError(
            f"{source} is a Kyutai '{model_type}' checkpoint, not '{kind}' "
            f"({CLI_FLAG[kind]} expects a {kind} model)"
        )
    names = {**LEGACY_MOSHI_FILES, **config}
    mimi_config = files.get(config["mimi_config_name"]) if "mimi_config_name" in config else None
    return CheckpointInfo.from_hf_repo(
        source if files.local_dir is None else "local/" + files.local_dir.name,
        moshi_weights=files.get(names["moshi_name"]),
        mimi_weights=files.get(names["mimi_name"]),
        tokenizer=files.get(names["tokenizer_name"]),
        config_path=config_path,
        mimi_config_path=mimi_config,
    )


def list_voices(source: str, suffix: str) -> list[str]:
    """Voice names available in a voice repository or directory (file names minus `suffix`).

    A hub repository is listed online when possible, else from the local cache, so the list
    shows what can be used now.
    """
    roots: list[Path] = []
    if is_local(source):
        roots.append(Path(source).expanduser())
    else:
        names = _list_hub_files(source)
        if names is not None:
            return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix))
        snapshots = hub_cache_dir() / ("models--" + source.replace("/", "--")) / "snapshots"
        if snapshots.is_dir():
            roots.extend(p for p in snapshots.iterdir() if p.is_dir())
    found = {
        str(path.relative_to(root))[: -len(suffix)]
        for root in roots
        for path in root.rglob("*" + suffix)
    }
    return sorted(found)


def _list_hub_files(repo_id: str) -> list[str] | None:
    """File names of a hub repo, or None when the hub cannot be asked (offline, no route)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return None
    from huggingface_hub import list_repo_files

    try:
        return list_repo_files(repo_id)
    except Exception:  # noqa: BLE001 - any hub failure means "use the cache"
        return None
