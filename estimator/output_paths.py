"""Output files and folders: checked before any work starts, written whole or not at all, and
a user's own file never overwritten without --force.

Checks (each failure is one RooflineError naming the option, the path and the fix):
  * a file: not a folder nor another non-regular file, its folder exists (or, for a default
    location, can be made) and is a folder, names within the file system's limits, a file can
    be created in the folder (tried, not asked: root passes os.access on a read-only file
    system), an existing file writable;
  * a folder the tool fills (``roofline report --out DIR``): a marker file ``.roofline-output``
    lists what the tool wrote there; a file of the same name that the tool did not write is
    the user's, and stays unless the user says --force.
Writes go to a temporary file in the same folder, then replace the target in one step, so an
interrupted run leaves the old file or the new one, never half of one. JSON is written strict:
a non-finite number (inf, NaN) is an error, since JSON has none.

Example:
    >>> path = check_output_file("--json", "out/report.json")   # before the work
    >>> write_json(path, data)                                   # after it
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import RooflineError

NAME_MAX_BYTES = 255
MARKER = ".roofline-output"


def _quoted(path_text: str) -> str:
    return repr(path_text if len(path_text) <= 80 else path_text[:60] + "..." + path_text[-17:])


def _short(path) -> str:
    text = str(path)
    return text if len(text) <= 100 else f"{text[:60]}...{text[-30:]}"


def check_output_file(option: str, path_text: str, suffixes: tuple[str, ...] = (), make_parents: bool = False,
                      subject: str | None = None) -> Path:
    """The path of a file to write, if it can be written (see module doc). `make_parents`: a
    missing folder will be created with the file (the nearest existing one is checked instead);
    `subject` starts each message (default: the option and the path)."""
    subject = subject or f"{option} {_quoted(path_text)}"
    path = Path(os.path.abspath(os.path.expanduser(path_text)))
    if suffixes and path.suffix.lower() not in suffixes:
        raise RooflineError(f"{subject}: the file must end in {' or '.join(suffixes)}")
    if os.path.isdir(path):
        example = path / ("out" + (suffixes[0] if suffixes else ".json"))
        raise RooflineError(f"{subject}: it is a directory; give a file path such as {_short(example)}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise RooflineError(f"{subject}: it exists and is not a regular file; give the path of a file")
    folder = path.parent
    while not os.path.lexists(folder):
        folder = folder.parent
    if not os.path.isdir(folder):
        raise RooflineError(f"{subject}: {_short(folder)} is a file, not a directory; pick a path in a directory")
    if folder != path.parent and not make_parents:
        raise RooflineError(f"{subject}: directory {_short(path.parent)} does not exist; create it "
                            f"(mkdir -p {_short(path.parent)}) or pick a path in an existing directory")
    _check_lengths(path, folder, subject)
    try:  # a real file, not os.access: root passes os.access even on a read-only file system
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".roofline-", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as e:
        raise RooflineError(f"{subject}: cannot create files in {_short(folder)} ({e.strerror}); pick a path in a "
                            "directory you can write to") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise RooflineError(f"{subject}: it exists and cannot be overwritten; choose another name")
    return Path(os.path.expanduser(path_text))  # as the user wrote it (messages and "wrote ..." lines)


def _check_lengths(path: Path, folder: Path, subject: str) -> None:
    """A RooflineError when a name to create under `folder`, or the whole path, is longer than
    the file system allows."""
    name_max, path_max = os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    for part in path.relative_to(folder).parts:
        if len(os.fsencode(part)) > name_max:
            raise RooflineError(f"{subject}: a name in it is {len(os.fsencode(part))} bytes long, over the "
                                f"{name_max} this file system allows; pick a shorter name")
    if len(os.fsencode(str(path))) >= path_max:
        raise RooflineError(f"{subject}: the path is {len(os.fsencode(str(path)))} bytes long, over the "
                            f"{path_max} this system allows; pick a shorter path")


def check_output_folder(option: str, path_text: str, names: list[str], force: bool = False) -> Path:
    """A folder to fill with `names` (files or subfolders): created later if missing; a name
    already there that the tool did not write stops the run unless `force`."""
    if any(len(os.fsencode(part)) > NAME_MAX_BYTES for part in Path(path_text).parts):
        raise RooflineError(f"{option} {_quoted(path_text)}: a name in it is over {NAME_MAX_BYTES} bytes; give a "
                            "shorter path")
    folder = Path(path_text)
    if folder.exists() and not folder.is_dir():
        raise RooflineError(f"{option} {_quoted(path_text)} is a file; give a folder")
    if not folder.exists():
        parent = folder.resolve().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
            raise RooflineError(f"{option} {_quoted(path_text)}: cannot create it under {_quoted(str(parent))}; "
                                "choose another place")
        return folder
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RooflineError(f"{option} {_quoted(path_text)} is not writable; choose another folder")
    ours = set(_marker_names(folder))
    theirs = [n for n in names if (folder / n).exists() and n not in ours]
    if theirs and not force:
        raise RooflineError(f"{option} {_quoted(path_text)} already holds {', '.join(theirs[:4])}"
                            f"{' ...' if len(theirs) > 4 else ''}, which this tool did not write there; give another "
                            "folder, or add --force to overwrite them")
    return folder


def _marker_names(folder: Path) -> list[str]:
    try:
        return (folder / MARKER).read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError):
        return []


def mark_written(folder: Path, names: list[str]) -> None:
    """Record that the tool wrote `names` into `folder` (so a later run may replace them)."""
    write_text(folder / MARKER, "\n".join(sorted(set(_marker_names(folder)) | set(names) - {""})))


def write_text(path: Path, text: str) -> None:
    """`text` into `path`, atomically (a temporary file in the same folder, then a rename)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def json_text(data) -> str:
    """Strict JSON (no Infinity or NaN): a non-finite number is a RooflineError."""
    try:
        return json.dumps(data, indent=2, allow_nan=False)
    except ValueError:
        raise RooflineError("a result is not a finite number (inf or NaN), which JSON cannot hold; check the chip's "
                            "figures and the sizes given") from None


def write_json(path: Path, data) -> None:
    write_text(path, json_text(data) + "\n")
