"""control-server: the one generator of the gRPC code, from control.proto (grpcio-tools).

    python -m control.proto.build        # writes control/proto/control_pb2{,_grpc}.py and .pyi

The package build runs it through ``build_hook.BuildPy``; ``control.proto.rpc`` runs it
when the modules are missing or older than the .proto (a fresh checkout).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent  # the directory that holds the control package
PROTO = HERE / "control.proto"
OUTPUTS = ("control_pb2.py", "control_pb2_grpc.py", "control_pb2.pyi")


def stale(directory: Path = HERE) -> bool:
    """True when a generated module is missing or older than the .proto."""
    source = (directory / PROTO.name).stat().st_mtime
    return any(not (directory / name).is_file() or (directory / name).stat().st_mtime < source
               for name in OUTPUTS)


def generate(directory: Path = HERE) -> list[Path]:
    """Runs protoc (from grpcio-tools) on ``directory``/control.proto (the package directory
    control/proto of a source tree); replaces the outputs atomically."""
    try:
        import grpc_tools
        from grpc_tools import protoc
    except ImportError as exc:  # pragma: no cover - a broken install
        raise RuntimeError("generating the gRPC code needs grpcio-tools: pip install grpcio-tools") from exc
    includes = Path(grpc_tools.__file__).parent / "_proto"
    root = directory.parent.parent  # imports in the generated code: control.proto.control_pb2
    proto = directory / PROTO.name
    with tempfile.TemporaryDirectory(dir=directory, prefix=".gen-") as tmp:
        args = ["grpc_tools.protoc", f"-I{root}", f"-I{includes}", f"--python_out={tmp}",
                f"--pyi_out={tmp}", f"--grpc_python_out={tmp}", str(proto.relative_to(root))]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
        made = Path(tmp) / directory.relative_to(root)
        written = []
        for name in OUTPUTS:
            os.replace(made / name, directory / name)  # atomic: a concurrent importer sees old or new
            written.append(directory / name)
    return written


def ensure_generated() -> None:
    if stale():
        generate()


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT), file=sys.stdout)
