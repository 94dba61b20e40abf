"""Captures without importing torch._dynamo, which nothing in a capture uses.

Importing `torch._dynamo` (the compiler's front end) takes about as long as importing torch
itself (0.9 s of a 0.9 to 1.0 s `import torch` on this machine; docs/speed.md), and a capture
on FakeTensorMode imports it although it compiles nothing:
- FakeTensorMode's constructor, and its dispatch of ops without a fast path, read flags of
  `torch._dynamo.config`; importing that module first imports its package, all of Dynamo;
- torch wraps functions a compiler must not trace (every dispatch mode's `__torch_dispatch__`,
  FakeTensorMode's included; the optimizers' steps; ...) in `torch._disable_dynamo`, whose
  wrapper imports Dynamo on its first call to make `torch._dynamo.disable(fn)` and keeps that
  on `fn`.

Inside `dynamo_unimported()` (a block, or a decorator: capture() wears it), while Dynamo is not
loaded, `torch._dynamo` is a stand-in that holds the config module, loaded alone (it imports
nothing of Dynamo's), and whose `disable`, called by torch._disable_dynamo's wrapper, returns
the function itself: with no Dynamo loaded nothing traces, so calling the function is what
`disable(fn)` would do. The wrapper's `import torch._dynamo` is answered with the stand-in
(only that statement in torch._compile is; the `__import__` hook removes itself once the real
package is loaded, and is removed with the block). Any other name read from the stand-in
imports the real package, which then takes its place.
On leaving the block the stand-in is removed, and so is every function it kept as its own
disabled version, so later calls (torch.compile in the same notebook) import Dynamo and disable
as torch does. The real package, imported later, finds the config module already loaded and
keeps it: its flags are the ones FakeTensorMode read. Where Dynamo is loaded already, the block
changes nothing.

Example:
    >>> with dynamo_unimported():
    ...     with FakeTensorMode():
    ...         y = torch.empty(2, 3) + 1
"""
from __future__ import annotations

import builtins
import contextlib
import importlib
import importlib.util
import os
import sys
import types

import torch

DYNAMO = "torch._dynamo"
DYNAMO_CONFIG = "torch._dynamo.config"
DISABLE_CACHE = "__dynamo_disable"  # where torch._disable_dynamo's wrapper keeps disable(fn)
WRAPPER_MODULE = "torch._compile"  # where torch._disable_dynamo's wrapper imports Dynamo


class _StandIn(types.ModuleType):
    """torch._dynamo as far as its config and `disable`; any other name imports the package."""

    def __init__(self, config: types.ModuleType):
        super().__init__(DYNAMO)
        self.config = config
        self.kept: dict[int, object] = {}  # id -> function whose disabled version is itself

    def disable(self, fn=None, recursive=True, **options):
        """`fn` itself for torch._disable_dynamo's wrapper; Dynamo's own disable for any other
        caller (a decorator applied while the block runs must stay one afterwards)."""
        if fn is None or sys._getframe(1).f_globals.get("__name__") != WRAPPER_MODULE:
            return importlib.import_module(DYNAMO).disable(fn, recursive, **options)
        self.kept[id(fn)] = fn  # torch versions that do not keep disable(fn) ask on every call
        return fn

    def __getattr__(self, name: str):
        return getattr(importlib.import_module(DYNAMO), name)


def dynamo_loaded() -> bool:
    return DYNAMO in sys.modules


@contextlib.contextmanager
def dynamo_unimported():
    """FakeTensorMode made and run inside the block without importing Dynamo, if it is not
    loaded when the block starts (a block inside another leaves it to the outer one)."""
    handled = dynamo_loaded() or isinstance(torch.__dict__.get("_dynamo"), _StandIn)
    config = None if handled else _dynamo_config()
    if config is None:
        yield
        return
    stand_in = _StandIn(config)
    torch_import = builtins.__import__

    def answer_wrapper(name, globals=None, locals=None, fromlist=(), level=0):
        if torch.__dict__.get("_dynamo") is not stand_in:  # the real package took its place: hook no more
            if builtins.__import__ is answer_wrapper:
                builtins.__import__ = torch_import
        elif name == DYNAMO and not fromlist and globals is not None and globals.get("__name__") == WRAPPER_MODULE:
            return torch
        return torch_import(name, globals, locals, fromlist, level)

    torch._dynamo = stand_in
    builtins.__import__ = answer_wrapper
    try:
        yield
    finally:
        if builtins.__import__ is answer_wrapper:
            builtins.__import__ = torch_import
        if torch.__dict__.get("_dynamo") is stand_in:
            del torch._dynamo
        for fn in stand_in.kept.values():
            if getattr(fn, DISABLE_CACHE, None) is fn:
                delattr(fn, DISABLE_CACHE)


def _dynamo_config() -> types.ModuleType | None:
    """torch._dynamo.config, loaded without its package (which Dynamo's import finds later);
    None where this torch keeps no such file (the block then leaves Dynamo's import to torch)."""
    if DYNAMO_CONFIG in sys.modules:
        return sys.modules[DYNAMO_CONFIG]
    path = os.path.join(os.path.dirname(torch.__file__), "_dynamo", "config.py")
    if not os.path.isfile(path):
        return None
    spec = importlib.util.spec_from_file_location(DYNAMO_CONFIG, path)
    config = importlib.util.module_from_spec(spec)
    sys.modules[DYNAMO_CONFIG] = config
    try:
        spec.loader.exec_module(config)
    except BaseException:
        del sys.modules[DYNAMO_CONFIG]
        raise
    return config
