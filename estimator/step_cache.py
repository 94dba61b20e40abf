"""Captured steps kept on disk between runs, keyed by everything that changes the graph.

The key is a SHA-256 over: this format, torch's and Python's versions, the source of the
estimator package (a change to capture or a rule makes new entries), the model's identity (a
zoo model: the zoo's source files; FILE.py:FUNC or module:FUNC: the file's content; a
Hugging Face config: the config file's content and transformers' version; torchvision:/timm:
the library's version) and the capture's settings (batch, seq, image, inputs file, mode,
optimizer, accumulate, recompute, dispatch, routing skew). A model file's own imports of
other local files are not part of the key: after editing those, pass --no-cache once.

Where: $ROOFLINE_CACHE_DIR, else the user cache directory ($XDG_CACHE_HOME or ~/.cache on
Linux, ~/Library/Caches on macOS, %LOCALAPPDATA% on Windows) + /torch-roofline/steps.
Each entry is one file, written to a temporary name and renamed into place, so concurrent
runs never read half a file; an entry that cannot be read is removed with a warning and the
step is captured again. Entries beyond ROOFLINE_CACHE_MAX_BYTES (default 2 GiB) go oldest
use first.

Example:
    >>> settings = capture_settings(32, mode="train")
    >>> step = cached_capture(model_identity("resnet50"), settings,
    ...                       lambda: capture(*build(32), **capture_options(settings)))
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Callable

from .capture import CapturedStep
from .optimizer import DEFAULT_OPTIMIZER
from .step_store import FORMAT, dumps, loads

log = logging.getLogger(__name__)
SUFFIX = ".step"
DEFAULT_MAX_BYTES = 2 << 30


def cache_dir() -> Path:
    """The folder of cached steps (module doc); not created here."""
    if os.environ.get("ROOFLINE_CACHE_DIR"):
        return Path(os.environ["ROOFLINE_CACHE_DIR"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "torch-roofline" / "steps"


def _digest_files(paths) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(str(path.name).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


_SOURCE: dict[str, str] = {}


def _package_source(package: str) -> str:
    """Digest of a package's .py files (estimator, roofline_zoo), once per process."""
    if package not in _SOURCE:
        spec = importlib.util.find_spec(package)
        root = Path(spec.origin).parent
        _SOURCE[package] = _digest_files(root.rglob("*.py"))
    return _SOURCE[package]


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def model_identity(spec: str | None = None, hf_config: str | None = None, hf_class: str | None = None,
                   inputs_file: str | None = None) -> dict | None:
    """What a model spec (the CLI's MODEL or --hf-config) is made of, for the key; None where it
    cannot be known without running user code (a module that is not found, a model id that is
    not a local path): such steps are not cached."""
    if hf_config is not None:
        path = Path(hf_config)
        config = path / "config.json" if path.is_dir() else path
        if not config.is_file():
            return None
        identity = {"hf_config": _digest_files([config]), "hf_class": hf_class,
                    "transformers": _version("transformers")}
        if inputs_file is not None:
            if not Path(inputs_file).is_file():
                return None
            identity["inputs"] = _digest_files([Path(inputs_file)])
        return identity
    prefix, _, name = spec.partition(":")
    if prefix in ("torchvision", "timm"):
        return {"library": prefix, "name": name, "version": _version(prefix)}
    if ":" not in spec:
        return {"zoo": spec, "source": _package_source("roofline_zoo")}
    target, _, func = spec.rpartition(":")
    if target.endswith(".py"):
        path = Path(target)
        return {"file": str(path.resolve()), "func": func, "content": _digest_files([path])} if path.is_file() else None
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError):
        return None
    if found is None or not found.origin or not Path(found.origin).is_file():
        return None
    return {"module": target, "func": func, "content": _digest_files([Path(found.origin)])}


def decoder_identity(spec: str | None = None, hf_config: str | None = None, hf_class: str | None = None) -> dict | None:
    """model_identity of a decoder `roofline serve` builds (estimator.serving_models): every one
    runs transformers' code, so transformers' version is part of it; a zoo decoder is built from a
    config in the estimator package, whose source is in every key."""
    if hf_config is None and spec is not None and ":" not in spec:
        return {"serving_decoder": spec, "transformers": _version("transformers")}
    identity = model_identity(spec, hf_config, hf_class)
    return None if identity is None else {**identity, "transformers": _version("transformers")}


# what a capture is made with, besides the model: every caller keys with all of them, so that the
# same step is one entry whichever command captured it
CAPTURE_SETTINGS = ("batch", "seq", "image", "mode", "optimizer", "accumulate", "recompute", "dispatch", "moe_skew")
CAPTURE_OPTIONS = CAPTURE_SETTINGS[3:]  # the settings that are capture()'s own keyword arguments


def capture_settings(batch: int | None, seq: int | None = None, image: int | None = None, mode: str = "inference",
                     optimizer: str = DEFAULT_OPTIMIZER, accumulate: int = 1, recompute: bool = False,
                     dispatch: str = "cpu", moe_skew: float = 1.0) -> dict:
    """Every CAPTURE_SETTINGS field, with capture()'s own defaults: build the model at (batch, seq,
    image), then capture it with capture_options(settings), so the key and the capture agree."""
    return dict(batch=batch, seq=seq, image=image, mode=mode, optimizer=optimizer, accumulate=accumulate,
                recompute=recompute, dispatch=dispatch, moe_skew=moe_skew)


def capture_options(settings: dict) -> dict:
    """The keyword arguments of capture() among `settings`."""
    return {name: settings[name] for name in CAPTURE_OPTIONS}


def cached_capture(identity: dict | None, settings: dict, make: Callable[[], CapturedStep],
                   use_cache: bool = True) -> CapturedStep:
    """The step of `identity` captured with `settings` (keys CAPTURE_SETTINGS): from the cache,
    else `make()` written to it. `identity` None (see model_identity) or `use_cache` False: make()."""
    if set(settings) != set(CAPTURE_SETTINGS):
        raise ValueError(f"capture settings {sorted(settings)}, expected {sorted(CAPTURE_SETTINGS)}")
    if identity is None or not use_cache:
        return make()
    key = step_key(identity, **settings)
    return load(key) or save(key, make())


def step_key(identity: dict, **settings) -> str:
    """The cache key of the step of `identity` captured with `settings` (module doc)."""
    parts = {"format": FORMAT, "torch": _version("torch"), "python": platform.python_version(),
             "estimator": _package_source("estimator"), "model": identity, "settings": settings}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def load(key: str) -> CapturedStep | None:
    """The cached step under `key`, or None (not cached, or unreadable: then removed, with a warning)."""
    path = cache_dir() / f"{key}{SUFFIX}"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        step = loads(data)
    except Exception as e:  # a damaged or foreign file: any error of unpickling
        log.warning("ignoring the unreadable cached step %s (%s: %s); capturing again", path, type(e).__name__,
                    str(e)[:120])
        path.unlink(missing_ok=True)
        return None
    try:
        os.utime(path)  # marks the entry as used, for the eviction order
    except OSError:
        pass
    return step


def save(key: str, step: CapturedStep) -> CapturedStep:
    """Writes `step` under `key` and returns it. A step that does not serialise, or a cache
    folder that cannot be written, only costs the next run a capture (logged at debug level)."""
    folder = cache_dir()
    try:
        data = dumps(step)
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=".writing-")
    except Exception as e:  # PicklingError, TypeError, OSError: not caching is always safe
        log.debug("not caching step %s: %s", key, e)
        return step
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, folder / f"{key}{SUFFIX}")
    except OSError as e:  # a full disk: the half-written file goes
        log.debug("not caching step %s: %s", key, e)
        Path(temporary).unlink(missing_ok=True)
        return step
    _evict(folder)
    return step


def entries() -> list[Path]:
    folder = cache_dir()
    return sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []


def _evict(folder: Path) -> None:
    limit = int(os.environ.get("ROOFLINE_CACHE_MAX_BYTES") or DEFAULT_MAX_BYTES)
    sized = []
    for path in entries():
        try:
            stat = path.stat()
        except OSError:  # removed by a concurrent run
            continue
        sized.append((stat.st_mtime, stat.st_size, path))
    total = sum(size for _, size, _ in sized)
    for _, size, path in sorted(sized):
        if total <= limit:
            break
        path.unlink(missing_ok=True)
        total -= size


def clear() -> tuple[int, int]:
    """Removes every cached step (and files left by interrupted writes): (files, bytes) removed."""
    folder = cache_dir()
    files = removed = 0
    if not folder.is_dir():
        return 0, 0
    for path in list(folder.glob(f"*{SUFFIX}")) + list(folder.glob(".writing-*")):
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        files, removed = files + 1, removed + size
    return files, removed


def usage() -> tuple[int, int]:
    """(entries, bytes) in the cache now."""
    sizes = []
    for path in entries():
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            continue
    return len(sizes), sum(sizes)
