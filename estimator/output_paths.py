"""Output files and folders: checked before any work starts, written whole or not at all, and
a user's own file never overwritten without --force.

Checks (each failure is one RooflineError naming the option, the path and the fix):
  * a file: not a folder, its folder exists and is a folder, names within the system's limits
    (255 bytes a part, 4096 in all), the folder writable, an existing file writable;
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
PATH_MAX_BYTES = 4096
MARKER = ".roofline-output"


def _quoted(path_text: str) -> str:
    return repr(path_text if len(path_text) <= 80 else path_text[:60] + "..." + path_text[-17:])


def _check_name_lengths(option: str, path_text: str) -> None:
    if len(os.fsencode(path_text)) > PATH_MAX_BYTES or any(
            len(os.fsencode(part)) > NAME_MAX_BYTES for part in Path(path_text).parts):
        raise RooflineError(f"{option} {_quoted(path_text)}: the name is too long (at most {NAME_MAX_BYTES} bytes a "
                            f"part, {PATH_MAX_BYTES} in all); give a shorter path")


def check_output_file(option: str, path_text: str, suffixes: tuple[str, ...] = ()) -> Path:
    """The path of a file to write, if it can be written (see module doc)."""
    _check_name_lengths(option, path_text)
    path = Path(path_text)
    if suffixes and path.suffix.lower() not in suffixes:
        raise RooflineError(f"{option} {_quoted(path_text)}: the file must end in {' or '.join(suffixes)}")
    if path.is_dir():
        raise RooflineError(f"{option} {_quoted(path_text)} is a folder; give a file name, e.g. "
                            f"{_quoted(str(path / ('out' + (suffixes[0] if suffixes else '.json'))))}")
    folder = path.parent
    if not folder.exists():
        raise RooflineError(f"{option} {_quoted(path_text)}: folder {_quoted(str(folder))} does not exist; create it "
                            "first")
    if not folder.is_dir():
        raise RooflineError(f"{option} {_quoted(path_text)}: {_quoted(str(folder))} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RooflineError(f"{option} {_quoted(path_text)}: folder {_quoted(str(folder))} is not writable; choose "
                            "another place")
    if path.exists() and (not path.is_file() or not os.access(path, os.W_OK)):
        raise RooflineError(f"{option} {_quoted(path_text)} exists and cannot be overwritten; choose another name")
    return path


def check_output_folder(option: str, path_text: str, names: list[str], force: bool = False) -> Path:
    """A folder to fill with `names` (files or subfolders): created later if missing; a name
    already there that the tool did not write stops the run unless `force`."""
    _check_name_lengths(option, path_text)
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
