"""The spec's Python API: `VoiceManager`, the voice-stream conductor, the voice API's audio formats
and the analytics answer."""
