"""control-server: the generated gRPC messages and stubs, generated first when
missing or older than control/proto/control.proto (a fresh checkout)."""

from __future__ import annotations

from control.proto.build import ensure_generated

ensure_generated()

from control.proto import control_pb2 as pb  # noqa: E402
from control.proto import control_pb2_grpc as pb_grpc  # noqa: E402

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Control"].full_name

__all__ = ["SERVICE_NAME", "pb", "pb_grpc"]
