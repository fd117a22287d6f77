"""Boot the built add-on image's services as s6-overlay does, with a stand-in for the Supervisor,
and report what happened as JSON on stdout.

Run inside a network namespace of its own (`unshare --net`): the add-on's server binds
0.0.0.0:10300 as in the add-on, and nothing here reaches or is reached from the machine's network.

  python -m tests.addon_boot IMAGE DATA_DIR ENV_JSON

- DATA_DIR is the add-on's /data (options.json, the HF cache), ENV_JSON the container's
  environment, less SUPERVISOR_API, which points at the stand-in.
- Each service starts with a clean environment (`env -i`): the longrun `coda-voice` from its
  service folder, then the oneshot `discovery` through its `up` file, read by execline as s6-rc
  does. Only their `with-contenv` shebangs give them the container's environment.
- The stand-in Supervisor records each POST /discovery (its bearer token and payload)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.addon_image import BUILDAH

S6 = "/etc/s6-overlay/s6-rc.d"
WYOMING_PORT = 10300
READY_SECONDS = 240


class Supervisor(BaseHTTPRequestHandler):
    """Stand-in for the Supervisor's discovery API."""

    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ok = self.path == "/discovery" and self.headers.get("Authorization", "").startswith("Bearer ")
        Supervisor.received.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                                    "payload": json.loads(body or b"null")})
        self.send_response(200 if ok else 401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"result": "ok" if ok else "error", "data": {"uuid": "0" * 32}}).encode())

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def run_in(container: str, volumes: list[str], *command: str, **popen: Any) -> subprocess.Popen[bytes]:
    """A process in the container with a clean environment, as s6 starts a service."""
    return subprocess.Popen([*BUILDAH, "run", "--isolation", "chroot", *volumes, container, "--",
                             "env", "-i", *command], **popen)


async def describe() -> dict[str, Any] | None:
    """The server's `info` answer to `describe`, once the port answers."""
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        try:
            async with AsyncTcpClient("127.0.0.1", WYOMING_PORT) as client:
                await client.write_event(Event(type="describe"))
                event = await asyncio.wait_for(client.read_event(), 30)
                return {"type": event.type, "data": event.data} if event else None
        except OSError:
            await asyncio.sleep(1)
    return None


def main(image: str, data_dir: str, env_json: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    http = ThreadingHTTPServer(("127.0.0.1", 0), Supervisor)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    env = {**json.loads(env_json), "SUPERVISOR_API": f"http://127.0.0.1:{http.server_address[1]}"}
    with tempfile.TemporaryDirectory() as contenv:
        for key, value in env.items():  # s6-overlay's container_environment: one file a variable
            Path(contenv, key).write_text(value)
        volumes = ["--volume", f"{data_dir}:/data", "--volume", f"{contenv}:/run/s6/container_environment:ro"]
        container = subprocess.run([*BUILDAH, "from", image], capture_output=True, text=True,
                                   check=True).stdout.strip()
        log = Path(data_dir).parent / "addon-server.log"
        try:
            with log.open("wb") as out:
                server = run_in(container, [*volumes, "--workingdir", f"{S6}/coda-voice"], "./run",
                                stdout=out, stderr=subprocess.STDOUT)
                oneshot = run_in(container, volumes, "/usr/bin/execlineb", "-P", f"{S6}/discovery/up",
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                info = asyncio.run(describe())
                discovery_log = oneshot.communicate(timeout=READY_SECONDS)[0].decode()
                server_alive = server.poll() is None
                server.terminate()
                server.wait(30)
        finally:
            subprocess.run([*BUILDAH, "rm", container], capture_output=True)
            http.shutdown()
    json.dump({"info": info, "announcements": Supervisor.received, "discovery_exit": oneshot.returncode,
               "discovery_log": discovery_log, "server_alive": server_alive,
               "server_log": log.read_text(errors="replace")[-6000:]}, sys.stdout)


if __name__ == "__main__":
    main(*sys.argv[1:4])
