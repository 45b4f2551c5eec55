"""PEP 562 exports: a package's public names loaded from their modules on first use (`symrl --help` and
`import symrl.cli` then load no torch or Gymnasium)."""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable


def lazy_exports(package: str, exports: dict, namespace: dict) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: a name of ``exports`` (name -> submodule) is imported
    on first use and kept in ``namespace`` (the package's globals); any other submodule is reachable as an
    attribute too, as an eager import made it."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            if importlib.util.find_spec(f"{package}.{name}") is None:
                raise AttributeError(f"module {package!r} has no attribute {name!r}")
            return importlib.import_module(f".{name}", package)
        value = getattr(importlib.import_module(f".{exports[name]}", package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
