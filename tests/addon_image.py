"""Build the add-on's image with a real OCI builder (Debian's buildah, chroot isolation: no Docker
engine runs here) and boot its services the way s6-overlay does.

What stands in for what, because it cannot be had here:
- **Home Assistant's base image** (`build_from`: Debian bookworm with s6-overlay, bashio, tempio)
  is a Debian bookworm root filesystem made with debootstrap, with Debian's `s6` and a
  `/command/with-contenv` over `s6-envdir` (what s6-overlay's does: the container's environment,
  kept in /run/s6/container_environment, for a service that starts with a clean one).
- **PyTorch's CPU index** (`TORCH_INDEX_URL`) is a local index of the CPU torch wheel this
  machine already has and its dependencies (PyPI's torch is the multi-GB CUDA build).
- **The Supervisor** is `addon_boot.py`'s HTTP server for `/discovery`.

Images are cached in buildah's store between runs: the base by its recipe, the image's layers by
buildah's own cache (only the server wheel's layer is rebuilt when the code changes)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.serverproc import ROOT

ADDON = ROOT / "addon" / "coda_voice"
CACHE = ROOT / ".cache" / "addon-image"
RELEASE = "bookworm"  # the Debian release of the add-on's build_from
WITH_CONTENV = """#!/bin/sh
# Stand-in for s6-overlay's with-contenv: the container's environment, as s6-overlay keeps it.
exec /usr/bin/s6-envdir -Lfn -- /run/s6/container_environment "$@"
"""
BUILDAH = ["buildah", "--cgroup-manager", "cgroupfs"]


def buildah(*args: str, timeout: float = 900) -> str:
    """Run buildah; its output, or an error with its log."""
    result = subprocess.run([*BUILDAH, *args], capture_output=True, text=True, timeout=timeout)
    if result.returncode:
        raise RuntimeError(f"buildah {' '.join(args[:2])} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


def image_id(name: str) -> str:
    return subprocess.run([*BUILDAH, "images", "--quiet", "--noheading", name], capture_output=True,
                          text=True).stdout.strip()


def base_image() -> str:
    """The stand-in for Home Assistant's Debian base image, built once per recipe."""
    recipe = hashlib.sha256(f"{RELEASE}\n{WITH_CONTENV}".encode()).hexdigest()[:12]
    name = f"localhost/coda-test-base:{RELEASE}-{recipe}"
    if image_id(name):
        return name
    root = CACHE / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(["debootstrap", "--variant=minbase", "--include=s6,execline,ca-certificates", RELEASE,
                    str(root), "http://deb.debian.org/debian"], check=True, capture_output=True, timeout=900)
    command = root / "command"
    command.mkdir()
    (command / "with-contenv").write_text(WITH_CONTENV)
    (command / "with-contenv").chmod(0o755)
    container = buildah("from", "scratch").strip()
    try:
        buildah("copy", container, str(root), "/")
        buildah("commit", "--quiet", container, name)
    finally:
        buildah("rm", container)
        shutil.rmtree(root, ignore_errors=True)
    return name


def torch_index(version: str) -> Path:
    """A PEP 503 index of torch `version`'s CPU build and its dependencies, from this machine's
    wheels (pip's own configuration finds them)."""
    index = CACHE / f"torch-index-{version}"
    if (index / "torch" / "index.html").is_file():
        return index
    wheels = CACHE / "torch-wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary", ":all:", "--python-version", "3.11",
                    "--dest", str(wheels), f"torch=={version}+cpu"], check=True, timeout=600)
    staging = index.with_suffix(".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for wheel in sorted(wheels.glob("*.whl")):
        project = staging / re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        project.mkdir(parents=True, exist_ok=True)
        wheel.replace(project / wheel.name)
    for project in staging.iterdir():
        links = "".join(f'<a href="{w.name}">{w.name}</a>\n' for w in sorted(project.glob("*.whl")))
        (project / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    staging.rename(index)
    shutil.rmtree(wheels, ignore_errors=True)
    return index


def pip_config() -> list[str]:
    """This machine's TLS setup for pip inside the build (a private CA, when pip is told of one)."""
    cert = os.environ.get("PIP_CERT")
    if not cert:
        return []
    conf = CACHE / "pip.conf"
    conf.write_text("[global]\ncert = /etc/ssl/coda-test-ca.crt\n")
    return ["--volume", f"{conf}:/etc/pip.conf:ro", "--volume", f"{cert}:/etc/ssl/coda-test-ca.crt:ro"]


def build(repo: Path, name: str = "localhost/coda-voice-test") -> str:
    """Build the add-on of the assembled repository `repo` (script/addon-repo) as the add-on
    builder does: build.yaml's args, BUILD_FROM / BUILD_ARCH, the add-on folder as context."""
    CACHE.mkdir(parents=True, exist_ok=True)
    spec: dict[str, Any] = yaml.safe_load((repo / "coda_voice" / "build.yaml").read_text())
    args = {**spec["args"], "BUILD_FROM": base_image(), "BUILD_ARCH": "amd64",
            "TORCH_INDEX_URL": "file:///torch-index"}
    previous = image_id(name)
    buildah("bud", "--format", "docker", "--isolation", "chroot", "--layers", "--tag", name,
            *(f"--build-arg={key}={value}" for key, value in args.items()),
            "--volume", f"{torch_index(str(spec['args']['TORCH_VERSION']))}:/torch-index:ro", *pip_config(),
            str(repo / "coda_voice"), timeout=1500)
    if previous and previous != image_id(name):
        subprocess.run([*BUILDAH, "rmi", previous], capture_output=True)  # the last run's top layers
    return name


def image_env(name: str) -> dict[str, str]:
    """The image's environment (its ENV lines): what s6-overlay writes to container_environment."""
    config = json.loads(buildah("inspect", "--type", "image", name))
    pairs = config["OCIv1"]["config"].get("Env", [])
    return dict(pair.split("=", 1) for pair in pairs)
