"""Every declared config key is read by the server, and the three generated views (YAML
schema, command line, reference docs) come from the one declaration."""

from __future__ import annotations

import re
from pathlib import Path

from wyoming_coda.__main__ import build_parser
from wyoming_coda.config import CONFIG_SCHEMA, config_keys, config_reference

PACKAGE = Path(__file__).resolve().parents[1] / "wyoming_coda"


def _source_outside_config() -> str:
    return "\n".join(p.read_text() for p in PACKAGE.rglob("*.py") if p.name != "config.py")


def test_every_key_is_read_somewhere() -> None:
    """A key counts as read where its section (or a `config` naming it) is followed by its
    name: `audio.format`, `config.vad_threshold`, `self.config.mode`."""
    source = _source_outside_config()
    unread = []
    for key in config_keys():
        owner = key.attrs[-2] if len(key.attrs) > 1 else "config"
        if not re.search(rf"\b({owner}|config|{owner}_config)\.{key.attrs[-1]}\b", source):
            unread.append(".".join(key.path))
    assert unread == [], f"declared but read nowhere: {unread}"


def test_schema_flags_and_docs_come_from_the_declaration() -> None:
    keys = config_keys()
    reference = config_reference()
    for key in keys:
        node = CONFIG_SCHEMA.schema
        for part in key.path:
            node = {str(k.schema): v for k, v in node.items()}[part]
        assert f"`{'.'.join(key.path)}`" in reference
    flags = {a.option_strings[0] for a in build_parser()._actions if a.option_strings}
    assert {k.flag for k in keys if k.flag} <= flags
    assert len(reference.splitlines()) == len(keys) + 7
