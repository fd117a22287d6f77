"""Speech out: the speaking pipeline (text stream → one TTS row → frames) and cloned voices."""
