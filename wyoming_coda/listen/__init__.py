"""Speech in: transcriptions (the audio front end, an STT row, the end of turn), enhancement and VAD."""
