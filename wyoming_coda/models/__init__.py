"""Which engines this process runs and their weights: the engine registry, the built-in engines of
each profile, the model store and checkpoint resolution."""
