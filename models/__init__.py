"""torch-roofline's model zoo: clean definitions of standard architectures.

Installed as the package `roofline_zoo` (mapped from this folder by pyproject.toml).
"""
from . import gpt2, resnet, vit  # noqa: F401  (importing registers the models)
from .registry import ZOO, ZooEntry, get, register

__all__ = ["ZOO", "ZooEntry", "get", "register"]
