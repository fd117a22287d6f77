"""The HTTP side port: health, analytics, metrics, events, duplex sessions, the home link and
memory, with TLS for the talk page."""
