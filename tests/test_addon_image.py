"""The add-on for real: its Dockerfile built by a real OCI builder on a stand-in for Home
Assistant's base image (tests/addon_image.py says what stands in for what), from the repository
script/addon-repo assembles; its services started as s6-overlay starts them, each with a clean
environment, the container's environment only through `with-contenv`; a stand-in Supervisor
receives the announcements. The server runs the tiny checkpoints from an offline cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.addon_discovery import discovery_payloads
from tests.addon_image import ADDON, build, image_env
from tests.serverproc import ROOT

pytestmark = pytest.mark.timeout(1800)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    repo = tmp_path_factory.mktemp("addon-repo") / "repo"
    subprocess.run([str(ROOT / "script" / "addon-repo"), str(repo)], check=True, capture_output=True, timeout=300)
    return build(repo)


def test_the_built_addon_starts_and_announces_itself(image: str, tiny_hub: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(os.environ["HF_HUB_CACHE"], data / "huggingface" / "hub", symlinks=False)
    options = {**yaml.safe_load((ADDON / "config.yaml").read_text())["options"],
               "profile": "kyutai", "device": "cpu", "llm_url": "http://127.0.0.1:9"}
    (data / "options.json").write_text(json.dumps(options))  # as the Supervisor writes it
    # the container's environment: the image's, the Supervisor's token, and what a test needs
    # (offline weights, one thread)
    env = {**image_env(image), "SUPERVISOR_TOKEN": "supervisor-token", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "NO_TORCH_COMPILE": "1"}
    result = subprocess.run(["unshare", "--net", "--", sys.executable, "-m", "tests.addon_boot", image, str(data),
                             json.dumps(env)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-6000:]
    report = json.loads(result.stdout)
    assert report["info"] and report["info"]["type"] == "info", report["server_log"]
    assert [p["name"] for p in report["info"]["data"]["asr"]] and report["info"]["data"]["tts"]
    assert report["discovery_exit"] == 0, report["discovery_log"]
    assert report["server_alive"], report["server_log"]
    token = (data / "http-token").read_text().strip()  # made by the server on its first start
    assert token
    host = report["announcements"][0]["payload"]["config"]["uri"].removeprefix("tcp://").split(":")[0]
    assert host
    assert [(a["path"], a["authorization"], a["payload"]) for a in report["announcements"]] == [
        ("/discovery", "Bearer supervisor-token", payload)
        for payload in discovery_payloads(host, 10300, options["http_port"], token)
    ], report["discovery_log"]
