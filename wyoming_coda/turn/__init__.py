"""Conversation turns: the runner, the router, the LLM rounds and tool loop, the turn's events,
Moshi's pipeline turns, conversations, tools, the home link and memory."""
