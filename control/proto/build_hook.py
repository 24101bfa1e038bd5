"""control-server: the setuptools build hook that generates the gRPC code before
the modules are collected (pyproject.toml: ``[tool.setuptools.cmdclass]``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools.command.build_py import build_py


def _load_generator():
    """build.py loaded by path: in pip's isolated build the project is not importable."""
    spec = importlib.util.spec_from_file_location("_mailgate_proto_build", Path(__file__).with_name("build.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate


class BuildPy(build_py):
    """setuptools' build_py that first runs ``python -m control.proto.build``."""

    def run(self) -> None:
        _load_generator()(Path(self.get_package_dir("control.proto")).resolve())  # in the tree being built
        super().run()
