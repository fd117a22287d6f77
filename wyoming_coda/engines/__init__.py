"""Streaming speech engines over moshi's models, each shared by every connection."""
