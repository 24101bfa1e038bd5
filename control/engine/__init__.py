"""control/engine — the engine that runs and supervises a node's services, and the service registry."""
