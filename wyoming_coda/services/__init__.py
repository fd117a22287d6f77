"""Per-connection Wyoming services (asr, tts, handle), created by the connection handler."""
