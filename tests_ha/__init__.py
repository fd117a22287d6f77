"""Tests that run inside Home Assistant's own test environment (pytest-homeassistant-custom-component)."""
