"""Whether the server reaches its LLM backend."""

from __future__ import annotations

from typing import Any

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import CodaConfigEntry
from .entity import CodaEntity

# the coordinator feeds the entity: nothing to update in parallel
PARALLEL_UPDATES = 0


async def async_setup_entry(
    hass: HomeAssistant, entry: CodaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    async_add_entities([CodaLlmReachable(entry)])


class CodaLlmReachable(CodaEntity, BinarySensorEntity):
    """On while the server's last check of its LLM server (Ollama, ...) succeeded."""

    _attr_device_class = BinarySensorDeviceClass.CONNECTIVITY
    _attr_translation_key = "llm_reachable"

    def __init__(self, entry: CodaConfigEntry) -> None:
        super().__init__(entry, "llm_reachable")

    def _llm(self) -> dict[str, Any]:
        return (self.coordinator.data or {}).get("llm") or {}

    @property
    def is_on(self) -> bool | None:
        reachable = self._llm().get("reachable")
        return None if reachable is None else bool(reachable) and bool(self._llm().get("healthy", True))

    @property
    def extra_state_attributes(self) -> dict[str, Any]:
        return {key: self._llm().get(key) for key in ("provider", "model")}
