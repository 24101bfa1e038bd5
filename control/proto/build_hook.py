"""control-server: the setuptools build hook that generates the gRPC code before
the modules are collected (pyproject.toml: ``[tool.setuptools.cmdclass]``)."""

from __future__ import annotations

from setuptools.command.build_py import build_py

from control.proto.build import generate


class BuildPy(build_py):
    """setuptools' build_py that first runs ``python -m control.proto.build``."""

    def run(self) -> None:
        generate()
        super().run()
