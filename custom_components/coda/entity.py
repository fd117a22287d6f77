"""Base entity: one Home Assistant device per Coda Voice server."""

from __future__ import annotations

from homeassistant.helpers.device_registry import DeviceInfo
from homeassistant.helpers.update_coordinator import CoordinatorEntity

from .const import DOMAIN, MANUFACTURER
from .coordinator import CodaConfigEntry, CodaCoordinator


def server_device(entry: CodaConfigEntry) -> DeviceInfo:
    """The server's device (its agents' devices hang under it)."""
    server = entry.runtime_data.server
    return DeviceInfo(
        identifiers={(DOMAIN, server.server_id)},
        name=entry.title,
        manufacturer=MANUFACTURER,
        model=f"Voice server ({server.device})",
        sw_version=server.version,
        configuration_url=entry.runtime_data.client.http_url,
    )


class CodaEntity(CoordinatorEntity[CodaCoordinator]):
    """An entity of one server, available while the server answers."""

    _attr_has_entity_name = True

    def __init__(self, entry: CodaConfigEntry, key: str) -> None:
        super().__init__(entry.runtime_data.coordinator)
        self._attr_unique_id = f"{entry.runtime_data.server.server_id}_{key}"
        self._attr_device_info = server_device(entry)
