"""torch-roofline's model zoo: clean definitions of standard architectures.

Installed as the package `roofline_zoo` (mapped from this folder by pyproject.toml). Every
module in this folder registers its models on import; this file imports them all.
"""
import importlib
import pkgutil

from .registry import ZOO, ZooEntry, get, register

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["ZOO", "ZooEntry", "get", "register"]
