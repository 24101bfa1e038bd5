"""Control plane, in rooms: server/ (gRPC control-server), engine/ (the supervisor and the
service registry), cli/ (the `mailgate` command), broker/ (the local Kafka and the topics)."""
