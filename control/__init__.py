"""Control plane: the local broker, topics, the engine supervisor and the CLI."""
