"""How every `roofline` parser explains itself: each option's default in its --help, and --version.

One formatter serves every parser and subparser (estimator.cli's parser class sets it, and
argparse builds subparsers of the same class), so no help string spells out its own default
unless it says more about it ("default 1: balanced").

Example:
    >>> version_text()  # doctest: +SKIP
    'torch-roofline 0.1.0 (torch 2.5.1, Python 3.11.7)'
"""
from __future__ import annotations

import argparse
import platform
import re
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "torch-roofline"


def shown_default(action: argparse.Action) -> str | None:
    """The default `action` shows in --help, as the user would type it; None where there is
    nothing to show (no default, a flag's False, help or version)."""
    default = action.default
    if default is None or default is False or default is argparse.SUPPRESS or action.help == argparse.SUPPRESS:
        return None
    if not (action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
        return None  # a required positional has no default
    if isinstance(default, float):
        return f"{default:g}"
    if isinstance(default, (list, tuple)):
        return ",".join(str(v) for v in default)
    return str(default)


def states_default(help_text: str, value: str) -> bool:
    """Whether a help text already gives `value` as the default ("(default 1: balanced)",
    "measured: the calibrated chip (default)")."""
    return bool(re.search(r"\bdefault\b", help_text)) and re.search(rf"(?<![\w.-]){re.escape(value)}(?![\w-])",
                                                                   help_text) is not None


class DefaultsFormatter(argparse.HelpFormatter):
    """argparse's formatter, with " (default: X)" after each option whose help does not already
    say it; nothing for options without a default or flags."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        value = shown_default(action)
        if value is None or states_default(text, value):
            return text
        return f"{text} (default: {value.replace('%', '%%')})" if text else f"default: {value.replace('%', '%%')}"


class VersionAction(argparse.Action):
    """`--version`: the package and torch versions, looked up only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                 help="print the versions of torch-roofline, torch and Python, and exit"):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())  # on stdout, as argparse's own version action does
        parser.exit(0)


def version_text() -> str:
    return f"{DISTRIBUTION} {package_version()} (torch {_torch_version()}, Python {platform.python_version()})"


def package_version() -> str:
    """The installed distribution's version; from a source tree that is not installed, the
    version in its pyproject.toml; else "unknown"."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    try:
        text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return "unknown"
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return found.group(1) if found else "unknown"


def _torch_version() -> str:
    try:
        return metadata.version("torch")
    except metadata.PackageNotFoundError:
        try:
            import torch
        except ImportError:
            return "not installed"
        return torch.__version__
