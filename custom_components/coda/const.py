"""Constants of the Coda Voice integration."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DOMAIN: Final = "coda"
MANUFACTURER: Final = "Coda Voice"

CONF_HTTP_PORT: Final = "http_port"
CONF_PROMPT: Final = "prompt"
CONF_MEMORY: Final = "memory"
CONF_VERBOSITY: Final = "verbosity"
CONF_TONE: Final = "tone"
CONF_LOCAL_FIRST: Final = "local_first"  # Home Assistant's own agent tries each turn before the LLM
CONF_DUPLEX_CONTROL: Final = "duplex_control"
CONF_MODE: Final = "mode"  # a conversation agent's own processing mode (one the server has loaded)
SUBENTRY_AGENT: Final = "conversation"  # the subentry type of a conversation agent
DEFAULT_AGENT_NAME: Final = "Coda Voice"  # the server's talk-page sessions may use this entry's tools

DEFAULT_PORT: Final = 10300
DEFAULT_HTTP_PORT: Final = 10301
HOUSEHOLD: Final = "household"  # the server's memory of turns without a Home Assistant user
SERVER_DEFAULT: Final = "server"  # personality option: keep the server's own profile
VERBOSITY_OPTIONS: Final = (SERVER_DEFAULT, "brief", "normal", "detailed")
TONE_OPTIONS: Final = (SERVER_DEFAULT, "friendly", "formal", "casual", "playful")
MODE_OPTIONS: Final = (SERVER_DEFAULT, "hybrid", "adaptive", "moshi_only")

# The TXT property every Coda Voice server puts in its `_wyoming._tcp` advertisement, and the
# handle program its `describe` lists: how a Coda server is told apart from other Wyoming servers.
TXT_CODA: Final = "coda"
TXT_SERVER_ID: Final = "id"
TXT_HTTP_PORT: Final = "http_port"
HANDLE_PROGRAMS: Final = ("coda-chat-only", "coda-llm")  # the server's handle program (its former name too)

CONNECT_TIMEOUT: Final = 5.0
TURN_EVENT_TIMEOUT: Final = 60.0  # longest silence of the server within a conversation turn
MAX_TOOL_ROUNDS: Final = 10
MAX_HISTORY: Final = 20  # chat-log messages sent with a turn (the server takes up to 40)
POLL_INTERVAL: Final = timedelta(seconds=30)  # fallback when the event stream is down
PUSH_INTERVAL: Final = 5  # seconds between analytics snapshots pushed over the event stream
