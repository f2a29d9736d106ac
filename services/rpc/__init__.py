"""The gRPC adapter: servicers, proto<->domain translation, the error map and the server factory."""
