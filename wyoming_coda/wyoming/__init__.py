"""The Wyoming protocol side: one connection's event handler, the asr, tts and handle services,
the `info` answer, defensive event reading and the zeroconf advertisement."""
