"""spam-filter: the setuptools build hook that builds the Rust extension ``streams.spam._native``
(pyproject.toml: ``[tool.setuptools.cmdclass]``).

setuptools-rust hooks ``build_rust`` into ``build_ext`` by replacing the command classes, but a
``[tool.setuptools.cmdclass]`` table (we have one, for control.proto's generated code) replaces
them all again when pyproject.toml is read. So ``build_ext`` is named there, and this one runs
``build_rust`` after the C extensions (there are none), as setuptools-rust's own would.
"""

from __future__ import annotations

from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """setuptools' build_ext, then setuptools-rust's ``build_rust`` (in place for an editable install)."""

    def run(self) -> None:
        super().run()
        if getattr(self.distribution, "rust_extensions", None):
            build_rust = self.get_finalized_command("build_rust")
            build_rust.inplace = self.inplace
            build_rust.run()
