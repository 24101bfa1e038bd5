"""control/server — control-server, the gRPC control plane (servicer, service layer, auth, serve())."""
