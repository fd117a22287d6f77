"""Every entity, option, action and error of the integration is named in strings.json, which the
English translation mirrors, and has an icon; the manifest matches what the code registers."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from custom_components.coda.const import DOMAIN, TONE_OPTIONS, VERBOSITY_OPTIONS
from custom_components.coda.sensor import SENSORS

PACKAGE = Path(__file__).resolve().parent.parent / "custom_components" / DOMAIN


def _json(name: str) -> dict:
    return json.loads((PACKAGE / name).read_text(encoding="utf-8"))


def test_strings_cover_entities_options_and_errors() -> None:
    strings = _json("strings.json")
    assert _json("translations/en.json") == strings
    sensors = strings["entity"]["sensor"]
    assert {d.translation_key for d in SENSORS} == set(sensors)
    assert set(sensors["mode"]["state"]) == set(next(d for d in SENSORS if d.key == "mode").options or [])
    assert set(strings["selector"]["verbosity"]["options"]) == set(VERBOSITY_OPTIONS)
    assert set(strings["selector"]["tone"]["options"]) == set(TONE_OPTIONS)
    assert set(strings["config"]["error"]) == {"cannot_connect", "not_coda", "invalid_auth"}
    icons = _json("icons.json")["entity"]
    assert set(icons["sensor"]) == set(sensors) and set(icons["binary_sensor"]) == {"llm_reachable"}
    actions = yaml.safe_load((PACKAGE / "services.yaml").read_text(encoding="utf-8"))
    assert set(strings["services"]) == set(actions) == set(_json("icons.json")["services"])
    for action, spec in actions.items():
        assert set(strings["services"][action]["fields"]) == set(spec["fields"]), action
    german = _json("translations/de.json")["exceptions"]["server_unavailable"]["message"]
    assert german != strings["exceptions"]["server_unavailable"]["message"]


def test_manifest() -> None:
    manifest = _json("manifest.json")
    assert manifest["domain"] == DOMAIN and manifest["config_flow"] is True
    assert manifest["zeroconf"] == ["_wyoming._tcp.local."]
    hacs = json.loads((PACKAGE.parent.parent / "hacs.json").read_text(encoding="utf-8"))
    assert hacs["homeassistant"] == "2026.2.0"
