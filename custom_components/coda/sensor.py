"""Analytics of the server as sensors: conversations, latency per stage, memory, models, mode."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import PERCENTAGE, EntityCategory, UnitOfInformation, UnitOfTime
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .coordinator import CodaConfigEntry
from .entity import CodaEntity

# the coordinator feeds every entity: nothing to update in parallel
PARALLEL_UPDATES = 0

MODES = ["moshi_only", "hybrid", "adaptive"]
# stage key in the server's analytics -> what the sensor is called
STAGES = ("stt_final", "llm_first_token", "tts_first_audio", "voice_to_voice")
COMPONENTS = ("stt", "tts", "moshi")


@dataclass(frozen=True, kw_only=True)
class CodaSensorDescription(SensorEntityDescription):
    """A sensor read from the analytics object."""

    value: Callable[[dict[str, Any]], Any]
    attributes: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    exists: Callable[[dict[str, Any]], bool] = lambda data: True


def _latency(stage: str, statistic: str) -> CodaSensorDescription:
    return CodaSensorDescription(
        key=f"{stage}_{statistic}", translation_key=f"{stage}_{statistic}",
        device_class=SensorDeviceClass.DURATION, native_unit_of_measurement=UnitOfTime.MILLISECONDS,
        state_class=SensorStateClass.MEASUREMENT, suggested_display_precision=0,
        value=lambda data: (data.get("latency_ms") or {}).get(stage, {}).get(statistic),
    )


def _memory_bytes(component: dict[str, Any]) -> int | None:
    """GPU memory the component took (CUDA), else the process memory its loading added (CPU)."""
    return component.get("allocated_bytes", component.get("rss_bytes"))


def _component(component: str) -> CodaSensorDescription:
    def components(data: dict[str, Any]) -> dict[str, Any]:
        return (data.get("vram_usage") or {}).get("components") or {}

    return CodaSensorDescription(
        key=f"memory_{component}", translation_key=f"memory_{component}",
        device_class=SensorDeviceClass.DATA_SIZE, native_unit_of_measurement=UnitOfInformation.BYTES,
        suggested_unit_of_measurement=UnitOfInformation.MEBIBYTES, suggested_display_precision=0,
        state_class=SensorStateClass.MEASUREMENT, entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,  # moves with every snapshot; memory_total says the sum
        value=lambda data: _memory_bytes(components(data).get(component) or {}),
        attributes=lambda data: {k: v for k, v in (components(data).get(component) or {}).items()
                                 if k in ("state", "budget_bytes", "weights_bytes")},
        exists=lambda data: component in components(data),
    )


def _total_memory(data: dict[str, Any]) -> int | None:
    usage = data.get("vram_usage") or {}
    return usage.get("allocated_bytes", usage.get("rss_bytes"))


SENSORS: tuple[CodaSensorDescription, ...] = (
    CodaSensorDescription(
        key="conversations", translation_key="conversations", state_class=SensorStateClass.TOTAL_INCREASING,
        value=lambda data: data.get("total_conversations"),
    ),
    CodaSensorDescription(
        key="active_conversations", translation_key="active_conversations",
        state_class=SensorStateClass.MEASUREMENT, value=lambda data: data.get("active_conversations"),
    ),
    CodaSensorDescription(
        key="turns", translation_key="turns", state_class=SensorStateClass.TOTAL_INCREASING,
        value=lambda data: data.get("total_turns"),
        attributes=lambda data: {"routes": dict(data.get("routes") or {})},  # local / llm / moshi / ...
    ),
    *(_latency(stage, statistic) for stage in STAGES for statistic in ("mean", "p95")),
    *(_component(component) for component in COMPONENTS),
    CodaSensorDescription(
        key="memory_total", translation_key="memory_total", device_class=SensorDeviceClass.DATA_SIZE,
        native_unit_of_measurement=UnitOfInformation.BYTES, suggested_unit_of_measurement=UnitOfInformation.MEBIBYTES,
        suggested_display_precision=0, state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC, value=_total_memory,
        attributes=lambda data: {"device": (data.get("vram_usage") or {}).get("device")},
    ),
    CodaSensorDescription(
        key="gpu_utilization", translation_key="gpu_utilization", native_unit_of_measurement=PERCENTAGE,
        state_class=SensorStateClass.MEASUREMENT, entity_category=EntityCategory.DIAGNOSTIC,
        entity_registry_enabled_default=False,  # a new value with every snapshot
        value=lambda data: (data.get("vram_usage") or {}).get("utilization_percent"),
        exists=lambda data: "utilization_percent" in (data.get("vram_usage") or {}),
    ),
    CodaSensorDescription(
        key="models_loaded", translation_key="models_loaded", state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value=lambda data: sum(state == "ready" for state in (data.get("models") or {}).values()),
        attributes=lambda data: dict(data.get("models") or {}),
    ),
    CodaSensorDescription(
        key="mode", translation_key="mode", device_class=SensorDeviceClass.ENUM, options=MODES,
        value=lambda data: data.get("mode") if data.get("mode") in MODES else None,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant, entry: CodaConfigEntry, async_add_entities: AddConfigEntryEntitiesCallback
) -> None:
    data = entry.runtime_data.coordinator.data or {}
    async_add_entities(CodaSensor(entry, description) for description in SENSORS if description.exists(data))


class CodaSensor(CodaEntity, SensorEntity):
    """One figure of the server's analytics."""

    entity_description: CodaSensorDescription

    def __init__(self, entry: CodaConfigEntry, description: CodaSensorDescription) -> None:
        super().__init__(entry, description.key)
        self.entity_description = description

    @property
    def native_value(self) -> Any:
        return self.entity_description.value(self.coordinator.data or {})

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        attributes = self.entity_description.attributes
        return attributes(self.coordinator.data or {}) if attributes else None
