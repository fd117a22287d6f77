"""The integration as hassfest and HACS validate it (neither can run here: hassfest needs Home
Assistant core's source, HACS the GitHub API), restated from their code: the manifest's keys, URLs
and order, hacs.json, the brand images Home Assistant serves for a custom integration, the
repository files HACS reads, and quality_scale.yaml made true rule by rule."""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serverproc import ROOT

PACKAGE = ROOT / "custom_components" / "coda"
TESTS_HA = ROOT / "tests_ha"
DOCS = ROOT / "docs" / "home-assistant.md"
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# hassfest's CUSTOM_INTEGRATION_MANIFEST_SCHEMA (script/hassfest/manifest.py): unknown keys are errors
MANIFEST_KEYS = {
    "domain", "name", "documentation", "codeowners", "version", "issue_tracker", "import_executor",
    "integration_type", "config_flow", "mqtt", "zeroconf", "ssdp", "bluetooth", "homekit", "dhcp", "usb",
    "quality_scale", "requirements", "dependencies", "after_dependencies", "loggers", "disabled", "iot_class",
    "single_config_entry", "preview_features",
}
IOT_CLASSES = {"assumed_state", "calculated", "cloud_polling", "cloud_push", "local_polling", "local_push"}
INTEGRATION_TYPES = {"device", "entity", "hardware", "helper", "hub", "service", "system"}
HACS_KEYS = {"name", "content_in_root", "country", "filename", "hacs", "hide_default_branch", "homeassistant",
             "persistent_directory", "render_readme", "zip_release"}
# script/hassfest/quality_scale.py ALL_RULES, with the two documentation rules added since
RULES = {
    "bronze": ["action-setup", "appropriate-polling", "brands", "common-modules", "config-flow",
               "config-flow-test-coverage", "dependency-transparency", "docs-actions", "docs-conditions",
               "docs-high-level-description", "docs-installation-instructions", "docs-removal-instructions",
               "docs-triggers", "entity-event-setup", "entity-unique-id", "has-entity-name", "runtime-data",
               "test-before-configure", "test-before-setup", "unique-config-entry"],
    "silver": ["action-exceptions", "config-entry-unloading", "docs-configuration-parameters",
               "docs-installation-parameters", "entity-unavailable", "integration-owner", "log-when-unavailable",
               "parallel-updates", "reauthentication-flow", "test-coverage"],
    "gold": ["devices", "diagnostics", "discovery", "discovery-update-info", "docs-data-update", "docs-examples",
             "docs-known-limitations", "docs-supported-devices", "docs-supported-functions", "docs-troubleshooting",
             "docs-use-cases", "dynamic-devices", "entity-category", "entity-device-class",
             "entity-disabled-by-default", "entity-translations", "exception-translations", "icon-translations",
             "reconfiguration-flow", "repair-issues", "stale-devices"],
    "platinum": ["async-dependency", "inject-websession", "strict-typing"],
}
# Home Assistant's brands rules (home-assistant/brands README): exact icon sizes, a logo's shortest side
BRAND_SIZES = {"icon.png": (256, 256), "icon@2x.png": (512, 512)}
LOGO_SHORT_SIDE = {"logo.png": (128, 256), "logo@2x.png": (256, 512)}
VERSION = re.compile(r"^\d+(\.\d+){1,2}([.-]?[a-z0-9]+)*$")
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def manifest() -> dict[str, Any]:
    return json.loads((PACKAGE / "manifest.json").read_text())


def manifest_problems(data: dict[str, Any], domain: str) -> list[str]:
    """hassfest's and HACS's manifest checks for a custom integration."""
    problems = [f"missing {key}" for key in ("domain", "name", "documentation", "codeowners", "version",
                                               "issue_tracker") if key not in data]
    problems += [f"unknown key {key}" for key in data if key not in MANIFEST_KEYS]
    if data.get("domain") != domain:
        problems.append("domain is not the folder's name")
    documentation = data.get("documentation", "")
    if not documentation.startswith("https://") or documentation.startswith("https://www.home-assistant.io/integrations"):
        problems.append("documentation must be https and the integration's own")
    if not URL.match(data.get("issue_tracker", "")):
        problems.append("issue_tracker is not a URL")
    if not isinstance(data.get("codeowners"), list) or not all(
            re.fullmatch(r"@[\w-]+(/[\w-]+)?", owner) for owner in data.get("codeowners", [])):
        problems.append("codeowners must be a list of @user or @org/team")
    if not VERSION.match(str(data.get("version", ""))):
        problems.append("version is not a version")
    if data.get("iot_class") not in IOT_CLASSES:
        problems.append("iot_class")
    if data.get("integration_type", "hub") not in INTEGRATION_TYPES:
        problems.append("integration_type")
    if not problems and list(data) != sorted(data, key=lambda k: {"domain": ".domain", "name": ".name"}.get(k, k)):
        problems.append("keys not sorted: domain, name, then alphabetical")
    return problems


def test_the_manifest_passes_hassfest_and_hacs() -> None:
    data = manifest()
    assert manifest_problems(data, PACKAGE.name) == []
    assert data["codeowners"]  # a quality scale of silver and above names an owner
    assert data["version"] == PROJECT["version"]


@pytest.mark.parametrize(("change", "problem"), [
    ({"documentation": None}, "missing documentation"),
    ({"issue_tracker": None}, "missing issue_tracker"),
    ({"documentation": "https://www.home-assistant.io/integrations/coda"}, "documentation must be https"),
    ({"codeowners": "someone"}, "codeowners must be a list"),
    ({"requirments": []}, "unknown key requirments"),
    ({"iot_class": "local"}, "iot_class"),
])
def test_the_manifest_check_catches_what_hassfest_refuses(change: dict[str, Any], problem: str) -> None:
    data = {key: value for key, value in {**manifest(), **change}.items() if value is not None}
    assert any(p.startswith(problem) for p in manifest_problems(data, PACKAGE.name))


def test_the_manifest_key_order_is_checked() -> None:
    data = manifest()
    shuffled = {"name": data["name"], "domain": data["domain"], **{k: v for k, v in data.items() if k not in ("domain", "name")}}
    assert manifest_problems(shuffled, PACKAGE.name) == ["keys not sorted: domain, name, then alphabetical"]


def test_hacs_finds_what_it_validates() -> None:
    """hacs.json (unknown keys refused), the repository's README and an OSI license, one
    integration under custom_components/, and its own brand icon."""
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert set(hacs) <= HACS_KEYS and isinstance(hacs["name"], str)
    assert not hacs.get("zip_release") or hacs.get("filename")
    assert VERSION.match(hacs["homeassistant"])
    assert [p.name for p in (ROOT / "custom_components").iterdir() if p.is_dir() and p.name != "__pycache__"] == ["coda"]
    assert (ROOT / "README.md").is_file()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert PROJECT["license"]["text"] == "MIT"
    assert (PACKAGE / "brand" / "icon.png").is_file()


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_brand_images_follow_the_brands_rules() -> None:
    """Home Assistant 2026.3+ serves a custom integration's brand/ folder; the sizes are the
    brands repository's."""
    brand = PACKAGE / "brand"
    names = {p.name for p in brand.iterdir()}
    assert names <= {"icon.png", "logo.png", "icon@2x.png", "logo@2x.png", "dark_icon.png", "dark_logo.png",
                     "dark_icon@2x.png", "dark_logo@2x.png"}
    for name, size in BRAND_SIZES.items():
        assert png_size(brand / name) == size, name
    for name, (low, high) in LOGO_SHORT_SIDE.items():
        assert low <= min(png_size(brand / name)) <= high, name
    for name in names:  # an @2x needs its plain version; no two images are the same file
        assert name.replace("@2x", "") in names
    assert len({(brand / name).read_bytes() for name in names}) == len(names)


def _module_assigns(path: Path, name: str) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
               for node in tree.body)


def _docs_section(title: str) -> str:
    text = DOCS.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    return match.group(1).strip() if match else ""


def _ha_tests() -> str:
    return "\n".join(p.read_text() for p in TESTS_HA.glob("test_*.py"))


def test_the_quality_scale_is_true_rule_by_rule() -> None:
    """Every rule of every tier is answered; an exemption says why; and what the file claims
    as done is there."""
    rules = yaml.safe_load((PACKAGE / "quality_scale.yaml").read_text())["rules"]
    every = [rule for tier in RULES.values() for rule in tier]
    assert sorted(rules) == sorted(every)
    for rule, value in rules.items():
        status = value if isinstance(value, str) else value["status"]
        assert status in ("done", "todo", "exempt"), rule
        if status == "exempt" or (status == "todo" and isinstance(value, dict)):
            assert value.get("comment"), f"{rule}: an exemption says why"

    def done(rule: str) -> bool:
        return rules[rule] == "done" or (isinstance(rules[rule], dict) and rules[rule]["status"] == "done")

    platforms = ("sensor.py", "binary_sensor.py", "conversation.py")
    claims = {
        "brands": lambda: (PACKAGE / "brand" / "icon.png").is_file(),
        "integration-owner": lambda: bool(manifest()["codeowners"]),
        "parallel-updates": lambda: all(_module_assigns(PACKAGE / p, "PARALLEL_UPDATES") for p in platforms),
        "entity-disabled-by-default": lambda: "entity_registry_enabled_default=False" in (PACKAGE / "sensor.py").read_text(),
        "docs-removal-instructions": lambda: "custom_components/coda" in _docs_section("Removal"),
        "docs-examples": lambda: _docs_section("Examples").count("\n- ") >= 2,
        "docs-use-cases": lambda: bool(_docs_section("Examples")),
        "docs-known-limitations": lambda: _docs_section("Known limitations").count("\n- ") >= 2,
        "docs-troubleshooting": lambda: (ROOT / "docs" / "troubleshooting.md").is_file(),
        "reconfiguration-flow": lambda: "SOURCE_RECONFIGURE" in _ha_tests() and '"wrong_server"' in _ha_tests(),
        "config-flow-test-coverage": lambda: all(f'"{reason}"' in _ha_tests() for reason in (
            "already_configured", "reauth_successful", "reconfigure_successful", "wrong_server")),
        "diagnostics": lambda: (PACKAGE / "diagnostics.py").is_file(),
        "action-setup": lambda: (PACKAGE / "services.yaml").is_file(),
    }
    for rule, holds in claims.items():
        if done(rule):
            assert holds(), f"quality_scale.yaml claims {rule}, which does not hold"
