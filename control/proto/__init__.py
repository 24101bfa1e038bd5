"""control-server: the gRPC contract (control.proto) and its generated code.

The generated modules (control_pb2.py, control_pb2_grpc.py, control_pb2.pyi) are
build output: `python -m control.proto.build` writes them; the package build runs
it (``build.BuildPy``), and ``control.proto.rpc`` runs it when they are missing or older
than the .proto. Import the messages from ``control.proto.rpc``.
"""
