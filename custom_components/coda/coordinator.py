"""Analytics of one Coda Voice server: pushed over its event stream, polled while that is down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.config_entries import ConfigEntry, ConfigSubentry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed

from .api import CodaAuthError, CodaClient, CodaError, ServerInfo
from .const import DOMAIN, POLL_INTERVAL, PUSH_INTERVAL, SUBENTRY_AGENT

_LOGGER = logging.getLogger(__name__)

RECONNECT_DELAYS = (1, 2, 5, 10, 30)  # seconds, then 30 s between tries


@dataclass
class CodaRuntimeData:
    """What a loaded config entry holds."""

    client: CodaClient
    server: ServerInfo
    coordinator: CodaCoordinator


type CodaConfigEntry = ConfigEntry[CodaRuntimeData]


def agents(entry: ConfigEntry) -> list[ConfigSubentry]:
    """The entry's conversation agents, oldest first."""
    return [sub for sub in entry.subentries.values() if sub.subentry_type == SUBENTRY_AGENT]


def talk_page_agent(entry: ConfigEntry) -> ConfigSubentry | None:
    """The agent whose settings (LLM API, instructions, Home Assistant first) the server's
    talk-page sessions get through the home link: the entry's first."""
    return next(iter(agents(entry)), None)


class CodaCoordinator(DataUpdateCoordinator[dict[str, Any]]):
    """The server's `/api/analytics` object. A background task listens to the event stream,
    whose `metrics` snapshots replace the poll while it is connected."""

    config_entry: CodaConfigEntry

    def __init__(self, hass: HomeAssistant, entry: CodaConfigEntry, client: CodaClient) -> None:
        super().__init__(hass, _LOGGER, config_entry=entry, name=DOMAIN, update_interval=POLL_INTERVAL)
        self.client = client
        self.pushing = False

    async def _async_update_data(self) -> dict[str, Any]:
        try:
            return await self.client.async_analytics()
        except CodaAuthError as err:
            raise ConfigEntryAuthFailed(str(err)) from err
        except CodaError as err:
            raise UpdateFailed(str(err)) from err

    def async_start_push(self) -> None:
        self.config_entry.async_create_background_task(self.hass, self._listen(), f"{DOMAIN} event stream")

    async def _listen(self) -> None:
        """Follow the event stream for the life of the entry."""
        await keep_connected(self._follow, f"event stream of {self.client.http_url}")

    async def _follow(self) -> None:
        try:
            async for event in self.client.async_events(PUSH_INTERVAL):
                if event.get("event_type") == "metrics" and isinstance(event.get("data"), dict):
                    self.pushing = True
                    self.async_set_updated_data(event["data"])
        finally:
            if self.pushing:
                self.pushing = False
                self.hass.async_create_task(self.async_request_refresh())  # the server may be gone: find out now


async def keep_connected(run: Callable[[], Awaitable[None]], what: str) -> None:
    """Run a connection (`run` returns or raises CodaError when it drops) again and again, with
    backoff; one that lasted a while starts the backoff over."""
    failures = 0
    while True:
        started = time.monotonic()
        try:
            await run()
        except CodaAuthError:
            _LOGGER.warning("The Coda Voice server refused the token (%s)", what)
        except CodaError as err:
            _LOGGER.debug("%s: %s", what, err)
        if time.monotonic() - started > RECONNECT_DELAYS[-1]:
            failures = 0
        await asyncio.sleep(RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)])
        failures += 1
