"""The Home Assistant add-on (addon/): its config against the Supervisor's rules, the run script
(options → exact command line, bad options refused), the discovery announcements (against a test
double of the Supervisor API) and the add-on repository with the server it ships (hadolint runs
over the Dockerfile in tests/test_deploy.py).

No Docker engine runs in the test environment: the image itself is not built here."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from tests.addon_discovery import discovery_payloads
from tests.serverproc import ROOT

ADDON = ROOT / "addon" / "coda_voice"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"
ARCHES = {"armhf", "armv7", "aarch64", "amd64", "i386"}
SCHEMA_TYPE = re.compile(r"^(str|bool|int|float|email|url|port|password|device|list\([^)]+\)|match\(.+\)|int\(\d*,\d*\)|float\([\d.]*,[\d.]*\))(\?)?$")


def config() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def value_matches(kind: str, value: Any) -> bool:
    """The Supervisor's option validation for the schema types this add-on uses."""
    kind = kind.rstrip("?")
    if kind.startswith("list("):
        return value in kind[5:-1].split("|")
    checks = {
        "str": lambda v: isinstance(v, str),
        "password": lambda v: isinstance(v, str),
        "bool": lambda v: isinstance(v, bool),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "port": lambda v: isinstance(v, int) and 1 <= v <= 65535,
        "url": lambda v: isinstance(v, str) and re.match(r"^https?://[^\s/]+", v) is not None,
    }
    return checks[kind](value)


def test_config_follows_the_supervisor_rules() -> None:
    cfg = config()
    for key in ("name", "version", "slug", "description", "arch"):
        assert cfg.get(key), f"missing required key {key}"
    assert re.fullmatch(r"[a-z0-9_]+", cfg["slug"])
    assert set(cfg["arch"]) <= ARCHES
    assert cfg["discovery"] == ["wyoming", "coda"] and cfg["init"] is False
    assert "image" not in cfg  # the Supervisor builds the add-on from its Dockerfile
    for port, host_port in cfg["ports"].items():
        assert re.fullmatch(r"\d+/(tcp|udp)", port) and (host_port is None or 1 <= host_port <= 65535)
    assert set(cfg["ports"]) == {"10300/tcp", "10301/tcp"} == set(cfg["ports_description"])
    schema, options = cfg["schema"], cfg["options"]
    assert all(SCHEMA_TYPE.match(kind) for kind in schema.values()), schema
    assert set(options) <= set(schema)
    for key, kind in schema.items():
        if not kind.endswith("?"):
            assert key in options, f"required option {key} has no default"
        if key in options:
            assert value_matches(kind, options[key]), f"{key}={options[key]!r} is not a {kind}"


def test_version_tied_to_the_package() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    build = yaml.safe_load((ADDON / "build.yaml").read_text())
    assert config()["version"] == version == build["args"]["CODA_VERSION"]
    assert set(build["build_from"]) == set(config()["arch"])


def test_every_option_is_translated_and_documented() -> None:
    translations = yaml.safe_load((ADDON / "translations" / "en.yaml").read_text())
    docs = (ADDON / "DOCS.md").read_text()
    for key in config()["schema"]:
        assert translations["configuration"][key]["name"] and translations["configuration"][key]["description"]
        assert f"`{key}`" in docs
    assert set(translations["network"]) == set(config()["ports"])
    for image, size in (("icon.png", (128, 128)), ("logo.png", (250, 100))):
        header = (ADDON / image).read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n"
        assert (int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")) == size


def run_script(tmp_path: Path, options: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    env = {**os.environ, "CODA_OPTIONS": str(path), "CODA_DRY_RUN": "1"}
    return subprocess.run([str(S6 / "coda-voice" / "run")], env=env, capture_output=True, text=True, timeout=30)


def test_run_script_turns_options_into_the_command_line(tmp_path: Path) -> None:
    options = {**config()["options"], "profile": "kyutai", "mode": "adaptive", "http_token": "s3cret-token",
               "debug_logging": True, "memory": False, "stt_model": "kyutai/stt-2.6b-en"}
    result = run_script(tmp_path, options)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "/opt/coda/bin/wyoming-coda",
        "--uri", "tcp://0.0.0.0:10300", "--data-dir", "/data", "--profile", "kyutai",
        "--device", "auto", "--mode", "adaptive", "--stt-model", "kyutai/stt-2.6b-en",
        "--llm-provider", "ollama", "--llm-url", "http://homeassistant.local:11434", "--llm-model", "qwen3:8b",
        "--http-port", "10301", "--http-token-file", "/data/http-token", "--no-memory", "--personality", "--debug",
    ]
    assert "s3cret-token" not in result.stdout  # the token is never on the command line


def test_the_default_options_select_the_cpu_profile(tmp_path: Path) -> None:
    """The add-on runs where Home Assistant runs, without a GPU: Whisper and Pocket TTS, cloned
    voices from the add-on's config folder."""
    from wyoming_coda.__main__ import build_parser, resolve_config

    result = run_script(tmp_path, config()["options"])
    assert result.returncode == 0, result.stderr
    resolved = resolve_config(build_parser().parse_args(result.stdout.split()[1:]))
    assert resolved.profile == "cpu" and resolved.mode == "hybrid" and resolved.tts.int8
    assert (resolved.stt.model, resolved.tts.model, resolved.tts.voice) == ("tiny.en", "english", "alba")
    assert resolved.tts.voices == "/config/voices" and "addon_config:rw" in config()["map"]


def test_the_command_line_is_one_the_server_accepts(tmp_path: Path) -> None:
    from wyoming_coda.__main__ import build_parser, resolve_config

    result = run_script(tmp_path, config()["options"])
    args = build_parser().parse_args(result.stdout.split()[1:])
    resolved = resolve_config(args)
    assert resolved.server.zeroconf is None  # the Supervisor's discovery announces the add-on instead
    assert resolved.server.uri == "tcp://0.0.0.0:10300"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"mode": "turbo"}, "option 'mode' must be hybrid, adaptive or moshi_only, got 'turbo'"),
        ({"http_port": "abc"}, "option 'http_port' must be a port number (1-65535), got 'abc'"),
        ({"http_port": 70000}, "option 'http_port' must be a port number (1-65535), got '70000'"),
        ({"device": "tpu"}, "option 'device' must be auto, cuda or cpu, got 'tpu'"),
        ({"profile": "gpu"}, "option 'profile' must be cpu or kyutai, got 'gpu'"),
        ({"mode": "adaptive"}, "option 'mode' must be hybrid with the cpu profile (Moshi needs a GPU), got 'adaptive'"),
    ],
)
def test_run_script_refuses_bad_options(tmp_path: Path, change: dict[str, Any], message: str) -> None:
    result = run_script(tmp_path, {**config()["options"], **change})
    assert result.returncode == 1 and result.stderr.strip() == f"coda-voice: {message}"
    assert not result.stdout


async def test_discovery_announces_both_integrations_to_the_supervisor(tmp_path: Path) -> None:
    """Against a TEST DOUBLE of the Supervisor's discovery API (no Supervisor runs here): one
    announcement for Home Assistant's wyoming integration, one for the Coda integration (the
    Home Assistant tests feed the same payloads to both config flows)."""
    received: list[tuple[str, dict[str, Any]]] = []

    async def discovery(request: web.Request) -> web.Response:
        received.append((request.headers["Authorization"], await request.json()))
        return web.json_response({"result": "ok", "data": {"uuid": "0" * 32}})

    app = web.Application()
    app.router.add_post("/discovery", discovery)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api_port = site._server.sockets[0].getsockname()[1]
    wyoming = socket.socket()
    wyoming.bind(("127.0.0.1", 0))
    wyoming.listen()
    try:
        options = tmp_path / "options.json"
        options.write_text(json.dumps({**config()["options"], "http_port": 10301}))  # no token option: made
        token_file = tmp_path / "http-token"
        token_file.write_text("side-token\n")  # as the server made it on first start
        env = {**os.environ, "SUPERVISOR_API": f"http://127.0.0.1:{api_port}", "SUPERVISOR_TOKEN": "supervisor-token",
               "CODA_WYOMING_PORT": str(wyoming.getsockname()[1]), "CODA_WAIT_SECONDS": "10",
               "CODA_OPTIONS": str(options), "CODA_TOKEN_FILE": str(token_file)}
        proc = await asyncio.create_subprocess_exec(str(S6 / "discovery" / "run"), env=env,
                                                    stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
    finally:
        wyoming.close()
        await runner.cleanup()
    host = subprocess.check_output(["hostname"], text=True).strip()
    expected = discovery_payloads(host, int(env["CODA_WYOMING_PORT"]), 10301, "side-token")
    assert received == [("Bearer supervisor-token", payload) for payload in expected]


def test_s6_services_are_wired() -> None:
    assert (S6 / "coda-voice" / "type").read_text().strip() == "longrun"
    assert (S6 / "discovery" / "type").read_text().strip() == "oneshot"
    assert (S6 / "discovery" / "up").read_text().strip() == "/etc/s6-overlay/s6-rc.d/discovery/run"
    assert (S6 / "discovery" / "dependencies.d" / "coda-voice").exists()
    assert {p.name for p in (S6 / "user" / "contents.d").iterdir()} == {"coda-voice", "discovery"}
    for script in ("coda-voice/run", "coda-voice/finish", "discovery/run"):
        assert os.access(S6 / script, os.X_OK)
        assert subprocess.run(["bash", "-n", str(S6 / script)]).returncode == 0


def test_the_addon_repository_ships_the_server_it_installs(tmp_path: Path) -> None:
    """script/addon-repo assembles the repository the add-on store reads: the add-on plus the
    server's wheel of the same version, which the Dockerfile installs and which runs."""
    out = tmp_path / "repo"
    result = subprocess.run([str(ROOT / "script" / "addon-repo"), str(out)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    version = config()["version"]
    assert yaml.safe_load((ADDON / "build.yaml").read_text())["args"]["CODA_VERSION"] == version
    assert (out / "repository.yaml").is_file() and (out / "coda_voice" / "config.yaml").is_file()
    wheel = out / "coda_voice" / "server" / f"wyoming_coda-{version}-py3-none-any.whl"
    assert wheel.is_file()
    assert '"/usr/src/server/wyoming_coda-${CODA_VERSION}-py3-none-any.whl"' in (ADDON / "Dockerfile").read_text()
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, timeout=120)
    env = {**os.environ, "PYTHONPATH": str(site)}
    ran = subprocess.run([sys.executable, "-c", "import wyoming_coda, wyoming_coda.__main__ as m; "
                          "print(wyoming_coda.__file__); m.build_parser().print_help()"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith(str(site)) and "--uri" in ran.stdout
    assert (site / "wyoming_coda" / "web" / "talk.html").is_file()
