"""spam-filter: the one place that chooses the Rust extension or the Python reference.

``streams.spam._native`` (crate ``streams/spam/rust``, built by ``pip install``
through setuptools-rust) does the per-word work of scoring; each module that
has a native path imports ``NATIVE`` from here and takes its Python code when
it is None. The choice is made once, when this module is first imported: the
extension is used when it imports, else the Python code serves everything, with
the same results (``tests/unit/spam/test_spam_native.py``). A test forces the
fallback in a fresh interpreter by making the extension unimportable
(``sys.modules["streams.spam._native"] = None``).
"""

from __future__ import annotations

from types import ModuleType

NATIVE: ModuleType | None
try:
    from streams.spam import _native as NATIVE
except ImportError:  # not built (no Rust where it was installed): the Python code serves
    NATIVE = None
