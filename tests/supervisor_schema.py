"""What Home Assistant's Supervisor validates in an add-on repository (its `apps/validate.py`,
`apps/options.py`, `store/validate.py`), restated here because the Supervisor cannot run in
the tests. Unlike the Supervisor, which drops an unknown key with a log line, an unknown key is
a problem here: it is a typo that would silently do nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ARCHES = {"aarch64", "amd64"}  # armhf, armv7, i386: deprecated
SLUG = re.compile(r"^[-_.A-Za-z0-9]+$")
DOCKER_PORT = re.compile(r"^\d+(?:/tcp|/udp)?$")
VOLUME = re.compile(r"^(data|config|ssl|share|media|backup|homeassistant_config|all_app_configs|app_config)"
                    r"(?::(rw|ro))?$")  # the legacy addons / addon_config / all_addon_configs left out
IMAGE = re.compile(r"^(?:[a-z0-9][a-z0-9.\-]*(?::\d+)?/)?[a-z0-9{][a-z0-9.\-_{}]*(?:/[a-z0-9{][a-z0-9.\-_{}]*)*$")
VERSION = re.compile(r"^\d+(\.\d+)*([a-z0-9.+-]*)$")
SCHEMA_ELEMENT = re.compile(  # RE_SCHEMA_ELEMENT, verbatim
    r"^(?:"
    r"|bool"
    r"|email"
    r"|url"
    r"|port"
    r"|device(?:\((?P<filter>subsystem=[a-z]+)\))?"
    r"|str(?:\((?P<s_min>\d+)?,(?P<s_max>\d+)?\))?"
    r"|password(?:\((?P<p_min>\d+)?,(?P<p_max>\d+)?\))?"
    r"|int(?:\((?P<i_min>-?\d+)?,(?P<i_max>-?\d+)?\))?"
    r"|float(?:\((?P<f_min>-?\d*\.?\d+)?,(?P<f_max>-?\d*\.?\d+)?\))?"
    r"|match\((?P<match>.*)\)"
    r"|list\((?P<list>.+)\)"
    r")\??$"
)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _ports(value: Any) -> bool:
    return isinstance(value, dict) and all(
        DOCKER_PORT.match(str(k)) and (v is None or (isinstance(v, int) and 1 <= v <= 65535)) for k, v in value.items())


def _one_of(*choices: str) -> Callable[[Any], bool]:
    return lambda value: value in choices


KEYS: dict[str, Callable[[Any], bool]] = {
    "name": _is_str, "version": lambda v: isinstance(v, str) and bool(VERSION.match(v)),
    "slug": lambda v: isinstance(v, str) and bool(SLUG.match(v)), "description": _is_str,
    "arch": lambda v: isinstance(v, list) and bool(v) and set(v) <= ARCHES,
    "url": lambda v: isinstance(v, str) and v.startswith(("https://", "http://")),
    "startup": _one_of("initialize", "system", "services", "application", "once"),
    "boot": _one_of("auto", "manual", "manual_only"), "init": _is_bool,
    "stage": _one_of("stable", "experimental", "deprecated"),
    "ports": _ports, "ports_description": lambda v: isinstance(v, dict) and all(
        DOCKER_PORT.match(str(k)) and isinstance(d, str) for k, d in v.items()),
    "homeassistant": lambda v: isinstance(v, str) and bool(VERSION.match(v)),
    "map": lambda v: isinstance(v, list) and all(isinstance(m, str) and VOLUME.match(m) for m in v),
    "discovery": _str_list, "backup_exclude": _str_list,
    "options": lambda v: isinstance(v, dict),
    "schema": lambda v: v is False or (isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(e, str) and SCHEMA_ELEMENT.match(e) for k, e in v.items())),
    "image": lambda v: isinstance(v, str) and ":" not in v.rsplit("/", 1)[-1] and bool(IMAGE.match(v))
    and not set(re.findall(r"{(\w*)}", v)) - {"arch"},
    "host_network": _is_bool, "hassio_api": _is_bool, "homeassistant_api": _is_bool, "audio": _is_bool,
    "timeout": lambda v: isinstance(v, int) and 10 <= v <= 300,
}
REQUIRED = ("name", "version", "slug", "description", "arch")
BUILD_KEYS: dict[str, Callable[[Any], bool]] = {
    "build_from": lambda v: isinstance(v, dict) and set(v) <= ARCHES and all(isinstance(i, str) for i in v.values()),
    "args": lambda v: isinstance(v, dict) and all(isinstance(a, str) for a in v.values()),  # a number voids the file
    "labels": lambda v: isinstance(v, dict) and all(isinstance(a, str) for a in v.values()),
    "squash": _is_bool,
}


def _option_fits(kind: str, value: Any) -> bool:
    """The Supervisor's check of an option's value against its schema element."""
    match = SCHEMA_ELEMENT.match(kind)
    assert match, kind
    base = kind.rstrip("?")
    if match["list"]:
        return str(value) in match["list"].split("|")
    if base == "bool":
        return isinstance(value, bool)
    if base == "port":
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535
    if base == "url":
        return isinstance(value, str) and re.match(r"^https?://[^\s/]+", value) is not None
    if base.startswith(("str", "password")):
        return isinstance(value, str)
    if base.startswith("int"):
        return isinstance(value, int) and not isinstance(value, bool)
    return value is not None


def config_problems(config: Any) -> list[str]:
    """What the Supervisor would refuse, drop or fail on in an add-on's config.yaml."""
    if not isinstance(config, dict):
        return ["config.yaml is not a mapping"]
    problems = [f"missing {key}" for key in REQUIRED if key not in config]
    problems += [f"unknown key {key}" for key in config if key not in KEYS]
    problems += [f"bad {key}: {config[key]!r}" for key in config if key in KEYS and not KEYS[key](config[key])]
    if set(config.get("ports_description") or {}) - set(config.get("ports") or {}):
        problems.append("ports_description names a port that is not in ports")
    schema, options = config.get("schema") or {}, config.get("options") or {}
    if isinstance(schema, dict) and KEYS["schema"](schema):
        problems += [f"option {key} is not in the schema" for key in options if key not in schema]
        for key, kind in schema.items():
            if key not in options:
                if not kind.endswith("?"):
                    problems.append(f"required option {key} has no default")
            elif not _option_fits(kind, options[key]):
                problems.append(f"option {key}={options[key]!r} is not a {kind}")
    return problems


def build_problems(build: Any, arches: list[str]) -> list[str]:
    """build.yaml: the Supervisor ignores a whole file with one bad value."""
    if not isinstance(build, dict):
        return ["build.yaml is not a mapping"]
    problems = [f"unknown key {key}" for key in build if key not in BUILD_KEYS]
    problems += [f"bad {key}: {build[key]!r}" for key in build if key in BUILD_KEYS and not BUILD_KEYS[key](build[key])]
    if set(arches) - set(build.get("build_from") or {}):
        problems.append("build_from lacks an architecture of the add-on")
    return problems


def repository_problems(root: Path) -> list[str]:
    """An add-on repository as the Supervisor reads it: repository.yaml at its root (name required,
    url and maintainer optional), each folder with a config.yaml an add-on."""
    meta = root / "repository.yaml"
    if not meta.is_file():
        return ["no repository.yaml at the root"]
    info = yaml.safe_load(meta.read_text())
    problems = [] if isinstance(info, dict) and isinstance(info.get("name"), str) else ["repository.yaml has no name"]
    problems += [f"repository.yaml: unknown key {key}" for key in info or {} if key not in ("name", "url", "maintainer")]
    configs = [p for p in root.rglob("config.*") if p.suffix in (".yaml", ".yml", ".json")
               and not any(part.startswith(".") or part == "rootfs" for part in p.relative_to(root).parts)]
    if not configs:
        problems.append("no add-on in the repository")
    for path in configs:
        config = yaml.safe_load(path.read_text())
        problems += [f"{path.parent.name}: {problem}" for problem in config_problems(config)]
        build = path.parent / "build.yaml"
        if build.is_file() and isinstance(config, dict):
            problems += [f"{path.parent.name}/build.yaml: {problem}"
                         for problem in build_problems(yaml.safe_load(build.read_text()), config.get("arch", []))]
        for image in ("icon.png", "logo.png"):
            if not (path.parent / image).is_file():
                problems.append(f"{path.parent.name}: no {image}")
    return problems
