"""Full-duplex Moshi sessions on the side port: the session, its wire messages, and the router
that lets the LLM speak through Moshi."""
