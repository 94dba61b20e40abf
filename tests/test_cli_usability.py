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


def _table_output(capsys, monkeypatch, width: int, *argv: str) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def _check_fits(out: str, width: int) -> list[list[str]]:
    """Every line within `width` cells; each table body line (between a header rule and the next
    blank line) holds a whole row: a wrapped name would leave a line of one fragment. Returns
    the body lines' words."""
    from rich.cells import cell_len

    assert out.strip()
    assert max(cell_len(line) for line in out.splitlines()) <= width
    rows, body = [], False
    for line in out.splitlines():
        if set(line.strip()) == {"─"}:
            body = True
        elif not line.strip():
            body = False
        elif body:
            words = line.split()
            assert len(words) >= 3, f"a wrapped cell at width {width}: {line!r}"
            rows.append(words)
    assert rows
    return rows


@pytest.mark.parametrize("width", [80, 120])
def test_estimate_tables_fit_the_terminal(capsys, monkeypatch, width):
    """By layer, type and op, on a training step (the widest table): no line wider than the
    terminal, no name wrapped; op names such as aten.convolution_backward.default stay whole."""
    for by in ("layer", "type", "op"):
        out = _table_output(capsys, monkeypatch, width, "estimate", "resnet18", "--train", "--batch", "2", "--by", by)
        rows = _check_fits(out, width)
        if by == "op":
            assert "aten.convolution_backward.default" in [r[0] for r in rows]
        if by == "layer":
            assert "layer4.0.downsample.0" in [r[0] for r in rows]
    assert "not shown at this width" in out if width == 80 else True


def test_long_names_are_shortened_in_the_middle_not_wrapped():
    from rich import box
    from rich.console import Console

    from estimator.render_fit import FitTable, middle_ellipsis

    assert middle_ellipsis("model.layers.31.self_attn.q_proj", 15) == "model.l….q_proj"  # 7 + 1 + 7 cells
    assert middle_ellipsis("fc", 15) == "fc"
    table = FitTable(box=box.SIMPLE_HEAD)
    table.add_column("layer", name=True)
    table.add_column("ms", justify="right")
    table.add_column("FLOP/B", justify="right", priority=1)
    name = "encoder.layers.11.self_attention.multi_head_attention.out_projection"
    table.add_row(name, "1.25", "35.2")
    console = Console(width=40, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    assert all(len(line) <= 40 for line in lines)
    row = next(line for line in lines if "1.25" in line)
    shown = row.split()[0]
    assert "…" in shown and name.startswith(shown.split("…")[0]) and name.endswith(shown.split("…")[1])
    assert "not shown at this width: FLOP/B" in " ".join(lines)  # dropped before the name was shortened


@pytest.mark.parametrize("width", [80, 120])
def test_chips_serve_and_cluster_tables_fit(capsys, monkeypatch, width):
    out = _table_output(capsys, monkeypatch, width, "estimate", "resnet18", "--train", "--batch", "8",
                        "--hardware", "a100-80gb-sxm,h100-sxm")
    assert {"a100-80gb-sxm", "h100-sxm"} <= {r[0] for r in _check_fits(out, width)}
    out = _table_output(capsys, monkeypatch, width, "serve", "gpt2", "--batch", "1,8", "--prompt", "256",
                        "--generate", "32")
    _check_fits(out, width)
    out = _table_output(capsys, monkeypatch, width, "estimate", "gpt2", "--train", "--seq", "128", "--gpus", "8",
                        "--parallel", "tp=2,pp=2,dp=2", "--hardware", "h100-sxm")
    assert "per unit and micro-batch" in out
    _check_fits(out, width)


@pytest.mark.parametrize("width", [80, 100])
def test_required_and_systems_tables_fit_with_whole_names(capsys, monkeypatch, width):
    """The boxed tables (required, hardware systems; measure and models are built the same way)
    drop their low-priority columns rather than wrapping a chip or system id."""
    from rich.cells import cell_len

    from estimator.system import system_ids

    out = _table_output(capsys, monkeypatch, width, "required", "resnet18", "--throughput", "100",
                        "--hardware", "a100-80gb-sxm,jetson-agx-orin")
    assert max(cell_len(line) for line in out.splitlines()) <= width
    assert "a100-80gb-sxm" in out and "jetson-agx-orin" in out
    out = _table_output(capsys, monkeypatch, width, "hardware", "systems")
    assert max(cell_len(line) for line in out.splitlines()) <= width
    assert all(system in out for system in system_ids())
    assert "not shown at this width" in out  # the ring column, GPUs and NICs per node went first
