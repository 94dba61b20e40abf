"""What a new user meets first: --version, defaults in every --help, tables that fit the
terminal, and the module type of an aggregated layer row."""
from __future__ import annotations

import argparse
import re

import pytest

from estimator.cli import _parser, main
from estimator.cli_help import DefaultsFormatter, shown_default


def _parsers(parser: argparse.ArgumentParser, prog: str = "roofline"):
    """(command, parser) for the top level and every subcommand, nested ones included."""
    yield prog, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _parsers(child, f"{prog} {name}")


def test_version_prints_package_and_torch(capsys):
    import torch

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert re.match(r"torch-roofline \d+\.\d+", out)
    assert torch.__version__.split("+")[0] in out


def test_every_help_shows_every_default():
    """Each option with a default (not None, not a flag's False) shows it in its help, in every
    parser and subparser; none shows '(default: None)'."""
    checked = 0
    commands = []
    for command, parser in _parsers(_parser()):
        commands.append(command)
        assert parser.formatter_class is DefaultsFormatter, command
        formatter = parser._get_formatter()
        text = " ".join(parser.format_help().split())
        assert "default: None" not in text, command
        for action in parser._actions:
            value = shown_default(action)
            if value is None:
                continue
            expanded = " ".join(formatter._expand_help(action).split())
            assert value in expanded, f"{command} {action.option_strings or action.dest}: {expanded!r}"
            assert re.sub(r"\s", "", expanded) in re.sub(r"\s", "", text), command  # as --help prints it
            checked += 1
    assert {"roofline estimate", "roofline hardware list", "roofline cache info", "roofline serve"} <= set(commands)
    assert checked >= 30


def test_help_adds_a_default_only_where_the_text_lacks_it():
    text = " ".join(_parser()._subparsers._group_actions[0].choices["estimate"].format_help().split())
    assert "group rows by (default: layer)" in text
    assert "(default: 25)" in text
    assert "(default fp32) (default" not in text  # stated once, not twice


def test_depth_rows_carry_the_type_of_the_module_at_that_depth():
    """resnet18 at --depth 1: layer1 is a Sequential of BasicBlocks (it used to read Conv2d, the
    type of its first op's module); at depth 2 layer1.0 is a BasicBlock; leaves keep their type."""
    import roofline_zoo

    from estimator.capture import capture
    from estimator.hardware import load_hardware
    from estimator.report import evaluate

    model, inputs = roofline_zoo.get("resnet18").build(batch=1, device="meta")
    report = evaluate(capture(model, inputs, mode="inference"), load_hardware("a100-80gb-sxm"), "fp32")
    types = {r.name: r.type for r in report.rows("layer", depth=1)}
    assert types["layer1"] == types["layer4"] == "Sequential"
    assert types["conv1"] == "Conv2d" and types["fc"] == "Linear"
    assert {r.name: r.type for r in report.rows("layer", depth=2)}["layer2.0"] == "BasicBlock"
    assert {r.name: r.type for r in report.rows("layer")}["layer2.0.downsample.0"] == "Conv2d"
