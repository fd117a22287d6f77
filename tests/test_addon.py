"""The Home Assistant add-on (addon/): its config against the Supervisor's rules, the run script
(options → exact command line, bad options refused), the discovery announcements (against a test
double of the Supervisor API) and the add-on repository with the server it ships (hadolint runs
over the Dockerfile in tests/test_deploy.py). tests/test_addon_image.py builds the image and
boots it."""

from __future__ import annotations

import asyncio
import json
import os
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
from tests.supervisor_schema import build_problems, config_problems, repository_problems
from tests.test_integration_package import png_size

ADDON = ROOT / "addon" / "coda_voice"
S6 = ADDON / "rootfs" / "etc" / "s6-overlay" / "s6-rc.d"


def config() -> dict[str, Any]:
    return yaml.safe_load((ADDON / "config.yaml").read_text())


def test_config_follows_the_supervisor_rules() -> None:
    cfg = config()
    assert config_problems(cfg) == []
    assert build_problems(yaml.safe_load((ADDON / "build.yaml").read_text()), cfg["arch"]) == []
    assert cfg["discovery"] == ["wyoming", "coda"] and cfg["init"] is False
    assert cfg["stage"] == "experimental"  # until real weights have run on the add-on
    # Home Assistant reaches both ports over the add-on network: none is published on the host
    assert cfg["ports"] == {"10300/tcp": None, "10301/tcp": None} and set(cfg["ports_description"]) == set(cfg["ports"])
    hacs = json.loads((ROOT / "hacs.json").read_text())
    assert cfg["homeassistant"] == hacs["homeassistant"]  # the integration's minimum


@pytest.mark.parametrize(("change", "problem"), [
    ({"slug": "coda voice"}, "bad slug"),
    ({"map": ["addon_config:rw"]}, "bad map"),
    ({"arch": ["armv7"]}, "bad arch"),
    ({"ports": {"10300": 0}}, "bad ports"),
    ({"image": "ghcr.io/x/{arch}-coda:1.0"}, "bad image"),
    ({"image": "ghcr.io/x/{machine}-coda"}, "bad image"),
    ({"stage": "beta"}, "bad stage"),
    ({"schema": {"mode": "choice(a|b)"}}, "bad schema"),
    ({"options": {"llm_url": ""}}, "option llm_url='' is not a url"),
    ({"homeasistant": "2026.2.0"}, "unknown key homeasistant"),
])
def test_the_supervisor_check_catches_what_the_supervisor_refuses(change: dict[str, Any], problem: str) -> None:
    cfg = config()
    if "options" in change:
        change = {"options": {**cfg["options"], **change["options"]}}
    assert any(p.startswith(problem) for p in config_problems({**cfg, **change}))


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
        assert png_size(ADDON / image) == size


def run_script(tmp_path: Path, options: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "options.json"
    path.write_text(json.dumps(options))
    env = {**os.environ, "CODA_OPTIONS": str(path), "CODA_DRY_RUN": "1"}
    return subprocess.run(["bash", str(S6 / "coda-voice" / "run")], env=env, capture_output=True, text=True,
                          timeout=30)


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
    assert resolved.tts.voices == "/config/voices" and "app_config:rw" in config()["map"]


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


Announcements = list[tuple[str, dict[str, Any]]]  # (Authorization header, payload) per POST


async def run_discovery(tmp_path: Path, statuses: list[int]) -> tuple[int, str, Announcements, Announcements]:
    """The discovery script (through bash: its `with-contenv` shebang is s6-overlay's, run for
    real in tests/test_addon_image.py) against a TEST DOUBLE of the Supervisor's discovery API (no
    Supervisor runs here) that answers with `statuses` in turn, then 200: its exit code, its log,
    the announcements received, and the two it should make."""
    received: Announcements = []

    async def discovery(request: web.Request) -> web.Response:
        received.append((request.headers["Authorization"], await request.json()))
        status = statuses.pop(0) if statuses else 200
        return web.json_response({"result": "ok", "data": {"uuid": "0" * 32}}, status=status)

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
               "CODA_OPTIONS": str(options), "CODA_TOKEN_FILE": str(token_file), "CODA_RETRIES": "3",
               "CODA_RETRY_SECONDS": "0"}
        proc = await asyncio.create_subprocess_exec("bash", str(S6 / "discovery" / "run"), env=env,
                                                    stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        wyoming.close()
        await runner.cleanup()
    host = subprocess.check_output(["hostname"], text=True).strip()
    expected = [("Bearer supervisor-token", payload)
                for payload in discovery_payloads(host, int(env["CODA_WYOMING_PORT"]), 10301, "side-token")]
    return proc.returncode or 0, stderr.decode(), received, expected


async def test_discovery_announces_both_integrations_to_the_supervisor(tmp_path: Path) -> None:
    """One announcement for Home Assistant's wyoming integration, one for the Coda integration
    (the Home Assistant tests feed the same payloads to both config flows)."""
    code, log, received, expected = await run_discovery(tmp_path, [])
    assert code == 0, log
    assert received == expected


async def test_a_failed_announcement_is_retried_and_never_stops_the_addon(tmp_path: Path) -> None:
    """A Supervisor that errs is asked again; one that keeps erring is logged, and the oneshot
    still ends well (s6-overlay would stop the container, server and all, on a failed oneshot)."""
    code, log, received, expected = await run_discovery(tmp_path, [500])
    assert code == 0 and "announcing the wyoming service failed (attempt 1)" in log
    assert received == [expected[0], *expected]

    code, log, received, _ = await run_discovery(tmp_path, [500] * 6)
    assert code == 0, log
    assert "gave up announcing the wyoming service" in log and "gave up announcing the coda service" in log
    assert len(received) == 6


def test_s6_services_are_wired() -> None:
    assert (S6 / "coda-voice" / "type").read_text().strip() == "longrun"
    assert (S6 / "discovery" / "type").read_text().strip() == "oneshot"
    assert (S6 / "discovery" / "up").read_text().strip() == "/etc/s6-overlay/s6-rc.d/discovery/run"
    assert (S6 / "discovery" / "dependencies.d" / "coda-voice").exists()
    assert {p.name for p in (S6 / "user" / "contents.d").iterdir()} == {"coda-voice", "discovery"}
    for script in ("coda-voice/run", "coda-voice/finish", "discovery/run"):
        assert os.access(S6 / script, os.X_OK)
        # s6-overlay starts services with a clean environment: the container's (SUPERVISOR_TOKEN)
        # comes only through with-contenv, as in the official add-ons
        assert (S6 / script).read_text().startswith("#!/command/with-contenv bash\n")
        assert subprocess.run(["bash", "-n", str(S6 / script)]).returncode == 0


def test_the_addon_repository_ships_the_server_it_installs(tmp_path: Path) -> None:
    """script/addon-repo assembles the repository the add-on store reads: the add-on plus the
    server's wheel of the same version, which the Dockerfile installs and which runs."""
    out = tmp_path / "repo"
    image = "ghcr.io/coda-voice/{arch}-addon-coda_voice"
    result = subprocess.run([str(ROOT / "script" / "addon-repo"), str(out), "--image", image], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    version = config()["version"]
    assert yaml.safe_load((ADDON / "build.yaml").read_text())["args"]["CODA_VERSION"] == version
    assert repository_problems(out) == []  # repository.yaml at its root, every add-on valid
    assert yaml.safe_load((out / "coda_voice" / "config.yaml").read_text()) == {**config(), "image": image}
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


WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def lint_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    """GitHub's workflow schema (check-jsonschema's copy): the workflow cannot run here."""
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def test_the_release_workflow_publishes_the_addon_repository(tmp_path: Path) -> None:
    """On a version tag: the repository assembled with images named, an image per architecture
    of the add-on, and the branch the add-on's docs tell users to add."""
    result = lint_workflow(WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert workflow[True]["push"]["tags"] == ["v*"]  # YAML reads the key `on` as true
    jobs = workflow["jobs"]
    assembled = "\n".join(step.get("run", "") for step in jobs["repository"]["steps"])
    assert "script/addon-repo build/addon-repo --image" in assembled and "{arch}-addon-coda_voice" in assembled
    assert {row["arch"] for row in jobs["image"]["strategy"]["matrix"]["include"]} == set(config()["arch"])
    branch = "addon-repository"
    assert f"HEAD:refs/heads/{branch}" in jobs["publish"]["steps"][-1]["run"]
    assert jobs["publish"]["needs"] == ["repository", "image"]  # the branch names images that exist
    assert f"https://github.com/coda-voice/wyoming-coda#{branch}" in (ADDON / "DOCS.md").read_text()

    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on: ubuntu-24.04\n", "runs_on: ubuntu-24.04\n", 1))
    assert lint_workflow(broken).returncode != 0
