"""The `roofline plot KIND` and `roofline report` subcommands (argument parsing and running).

    roofline plot roofline resnet50 --hardware a100-80gb-sxm,h100-sxm --batch 32 --train --out r.png
    roofline plot chips --out chips.svg
    roofline report --models resnet50,vit_b_16,... --hardware local,a100-80gb-sxm --batch 1,64,256 --out DIR
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .cli_args import int_list, names
from .errors import RooflineError
from .output_paths import check_output_folder, mark_written
from .precision import PRECISIONS, get_precision

PLOT_KINDS = ("roofline", "chips", "breakdown", "models", "models-roofline", "scatter", "correlation")
DEFAULT_MODELS = "resnet18,resnet50,mobilenet_v2,efficientnet_b0,vgg16,vit_b_16,deit_small,bert_base,gpt2,convnext_tiny"


def add_parsers(sub) -> None:
    """Register `plot` and `report` on the main parser's subparsers."""
    plot = sub.add_parser("plot", help=f"draw a figure as PNG or SVG: {', '.join(PLOT_KINDS)}",
                          description="Draw one figure. KIND: roofline (one model's layers on chips' rooflines), "
                          "chips (the catalog's rooflines), breakdown (per layer type), models (FLOPs, parameters, "
                          "memory, intensity), models-roofline (models x batches on one chip's roofline), scatter "
                          "(latency vs FLOPs and parameters, throughput vs batch), correlation (Spearman heatmap).")
    plot.add_argument("kind", choices=PLOT_KINDS, metavar="KIND", help=" | ".join(PLOT_KINDS))
    plot.add_argument("model", nargs="?", help="roofline, breakdown: the model (zoo name, FILE.py:FUNC, ...)")
    plot.add_argument("--models", help="models, models-roofline, scatter, correlation: comma-separated models "
                      f"(default {DEFAULT_MODELS})")
    plot.add_argument("--hardware", help="chip id(s), each optionally ID@PRECISION (e.g. a100-80gb-sxm@amp-bf16); "
                      "roofline and correlation take several (comma-separated), chips takes a list (default: the "
                      "whole catalog and local); default a100-80gb-sxm elsewhere")
    plot.add_argument("--batch", default=None, help="batch size; models, models-roofline, scatter, correlation take "
                      "a comma-separated list (default 1,8,64 there, 1 elsewhere)")
    _add_inputs(plot, "default fp32; chips: each chip's 16-bit matrix peak, else fp32")
    plot.add_argument("--train", action="store_true", help="roofline, breakdown: a training step (forward, loss, "
                      "backward, AdamW update) instead of inference")
    plot.add_argument("--style", default="pie", choices=("pie", "bar"), help="breakdown: pie or bar charts")
    plot.add_argument("--top", type=int, default=8, help="breakdown: layer types shown before 'other' (default 8)")
    plot.add_argument("--measure", action="store_true", help="roofline: also time each layer on this machine "
                      "(first chip must be local); models-roofline, scatter, correlation: time each model and batch")
    _add_measure_options(plot)
    plot.add_argument("--out", required=True, help="the file to write: .png or .svg")
    plot.set_defaults(run=run_plot)

    rep = sub.add_parser("report", help="every figure, CSV and JSON tables, comments, one HTML page and Markdown "
                         "(the seed 002 assignment in one command)")
    rep.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated models, at least 10 for the whole "
                     f"assignment (default {DEFAULT_MODELS})")
    rep.add_argument("--hardware", default="local,a100-80gb-sxm", help="comma-separated chips, each optionally "
                     "ID@PRECISION to override --precision for it, e.g. local,a100-80gb-sxm@amp-bf16 (default "
                     "local,a100-80gb-sxm; local needs `roofline calibrate`)")
    rep.add_argument("--batch", default="1,64,256", help="inference batch sizes (default 1,64,256)")
    rep.add_argument("--train-batch", type=int, default=8, help="batch of the training steps for the forward:backward "
                     "table and breakdowns (default 8)")
    _add_inputs(rep)
    rep.add_argument("--measure", action="store_true", help="also time every model and batch on this machine (the "
                     "local chip); batches that do not fit are noted in the report, not fatal")
    _add_measure_options(rep)
    rep.add_argument("--svg", action=argparse.BooleanOptionalAction, default=False, help="also write each figure "
                     "as SVG beside its PNG (the page embeds the PNGs; the SVGs take about a third of the drawing "
                     "time; default: PNG only)")
    rep.add_argument("--jobs", type=int, default=None, metavar="N", help="worker processes for the captures and "
                     "figures (default: the cores this process may use; 1: all in this process)")
    rep.add_argument("--out", required=True, help="output folder (created if missing)")
    rep.add_argument("--force", action="store_true", help="overwrite report files in --out that this tool did not "
                     "write there (by default such a file stops the run)")
    rep.set_defaults(run=run_report)


def _add_inputs(parser: argparse.ArgumentParser, precision_help: str = "default fp32") -> None:
    parser.add_argument("--no-cache", action="store_true", help="capture again instead of reading steps from the "
                        "disk cache of captured steps (`roofline cache info`), and do not write them there")
    parser.add_argument("--precision", choices=list(PRECISIONS), metavar="P",
                        help=f"one of {', '.join(PRECISIONS)} ({precision_help})")
    parser.add_argument("--seq", type=int, help="sequence length (token models)")
    parser.add_argument("--image", type=int, help="image side in pixels (image models)")


def _add_measure_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warmup", type=int, default=1, help="with --measure: untimed runs first (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="with --measure: timed runs, median kept (default 3)")
    parser.add_argument("--max-measure-s", type=float, default=120.0, help="with --measure: skip (and note) a "
                        "configuration whose predicted time for all runs exceeds this (default 120 s)")


@contextmanager
def _progress(total: int, what: str):
    """A callback advancing a progress bar on stderr by one unit of work; where stderr is not a
    terminal (CI, a log file) it prints one line per unit instead, with elapsed seconds."""
    err = Console(stderr=True)
    if err.is_terminal:
        columns = (TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=err) as progress:
            task = progress.add_task(what, total=total)
            yield lambda done: progress.update(task, advance=1, description=done)
        return
    start, count = time.monotonic(), 0

    def line(done: str) -> None:
        nonlocal count
        count += 1
        print(f"[{count}/{total}] {done} ({time.monotonic() - start:,.0f} s)", file=sys.stderr, flush=True)
    yield line


def _batches(text: str | None, default: str) -> list[int]:
    return int_list(default if text is None else text, "--batch")


def _chips(text: str | None, default: str):
    """The chips of --hardware, and the precision each names with ID@PRECISION ({} if none does)."""
    from .hardware import load_hardware
    from .precision import get_precision

    chips, precisions = [], {}
    for name in names(text if text is not None else default, "--hardware"):
        chip_id, at, precision = name.partition("@")
        if at and not (chip_id and precision):
            raise RooflineError(f"--hardware {name[:80]!r}: write ID@PRECISION with both parts, e.g. "
                                "a100-80gb-sxm@amp-bf16, or the ID alone")
        chips.append(load_hardware(chip_id))
        if precision:
            precisions[chips[-1].id] = get_precision(precision).name
    return chips, precisions


def _precision(args, precisions: dict[str, str], chip) -> str:
    """The precision `chip` runs at: its own from ID@PRECISION, else --precision, else fp32."""
    return precisions.get(chip.id, args.precision or "fp32")


def run_report(args) -> int:
    from .parallel_work import usable_cores, worker_pool
    from .report_build import ReportSettings, build_report, work_units

    chips, precisions = _chips(args.hardware, "")
    settings = ReportSettings(models=names(args.models, "--models"), chips=chips, chip_precisions=precisions,
                              batches=_batches(args.batch, ""), precision=args.precision or "fp32",
                              train_batch=args.train_batch, seq=args.seq, image=args.image, measure=args.measure,
                              warmup=args.warmup, runs=args.runs, max_measure_s=args.max_measure_s,
                              svg=args.svg, use_cache=not args.no_cache)
    out_dir = check_output_folder("--out", args.out, REPORT_NAMES, force=args.force)  # before any work
    if args.jobs is not None and args.jobs < 1:
        raise RooflineError(f"--jobs must be at least 1, got {args.jobs}")
    jobs = min(args.jobs or usable_cores(), len(settings.models) * (len(settings.batches) + 1))
    with worker_pool(jobs) as pool, _progress(work_units(settings), "report") as advance:  # workers before the bar
        build_report(settings, out_dir, advance, pool)
    mark_written(out_dir, REPORT_NAMES)
    print(f"wrote {out_dir / 'report.html'} (self-contained), {out_dir / 'report.md'}, {out_dir / 'report.json'}, "
          f"figures/ and tables/")
    return 0


REPORT_NAMES = ["report.html", "report.md", "report.json", "figures", "tables"]  # what a report writes in --out


def run_plot(args) -> int:
    from .plot_style import check_output_path, save_figure

    out = check_output_path(args.out)  # before any work
    needs_model = args.kind in ("roofline", "breakdown")
    if needs_model and not args.model:
        raise RooflineError(f"plot {args.kind} needs a MODEL, e.g. `roofline plot {args.kind} resnet50 --out f.png`")
    if not needs_model and args.model:
        raise RooflineError(f"plot {args.kind} takes no MODEL argument ({args.model!r}); use --models a,b,c")
    with Console(stderr=True).status(f"plot {args.kind}…"):
        fig = _KINDS[args.kind](args)
    save_figure(fig, out)
    print(f"wrote {out}")
    return 0


def _plot_chips(args):
    from .hardware import catalog_and_local
    from .plot_roofline import chips_roofline

    if args.hardware:
        chips, precisions = _chips(args.hardware, "")
        if precisions:
            raise RooflineError("plot chips draws every chip at one precision: give --precision, not ID@PRECISION")
    else:
        chips = catalog_and_local()
    return chips_roofline(chips, args.precision)


def _single_report(args, chip, precision: str):
    """The model's step (from the step cache unless --no-cache, as `estimate` reads it) on `chip`."""
    from .capture import capture
    from .device_dispatch import dispatch_for
    from .model_source import load_model
    from .report import evaluate
    from .step_cache import cached_capture, capture_options, capture_settings, model_identity

    batches = _batches(args.batch, "1")
    if len(batches) > 1:
        raise RooflineError(f"plot {args.kind} takes one --batch, got {args.batch!r}")
    settings = capture_settings(batches[0], args.seq, args.image, "train" if args.train else "inference",
                                dispatch=dispatch_for([chip.kind]))  # the kernels `estimate` records for this chip

    def make():
        model, inputs, name = load_model(args.model, batch=batches[0], seq=args.seq, image=args.image)
        return capture(model, inputs, model_name=name, **capture_options(settings))

    step = cached_capture(None if args.no_cache else model_identity(args.model), settings, make)
    return step, evaluate(step, chip, precision)


def _plot_roofline(args):
    from .plot_roofline import layer_roofline

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    for chip in chips:  # a precision a chip lacks fails before the capture
        chip.matrix_peak(get_precision(_precision(args, precisions, chip)))
    step, first = _single_report(args, chips[0], _precision(args, precisions, chips[0]))
    reports = [first] + [first.recost(hardware=chip, precision=_precision(args, precisions, chip)) for chip in chips[1:]]
    measured_layers = measured_step_s = None
    if args.measure:
        if first.precision.name != "fp32":
            raise RooflineError(f"--measure times layers in fp32; the local chip runs at {first.precision.name} here: "
                                "drop --precision or @PRECISION for it")
        measured_layers = _measure_layers(args, chips[0], step)
        measured_step_s = sum(f + b for f, b in measured_layers.values())
    return layer_roofline(reports, measured_layers, measured_step_s)


def _measure_layers(args, chip, step) -> dict[str, tuple[float, float]]:
    import roofline_zoo

    from .compare import measure_layers
    from .measure import check_fits

    if chip.id != "local":
        raise RooflineError(f"--measure times layers on this machine: make local the first chip of --hardware "
                            f"(got {chip.id})")
    if args.model not in roofline_zoo.ZOO:
        raise RooflineError(f"--measure needs a zoo model (real weights are built), got {args.model!r}")
    check_fits(step, args.model, "cpu")
    model, inputs = roofline_zoo.get(args.model).build(batch=step.batch, image=args.image, seq=args.seq,
                                                       device="cpu")
    return measure_layers(model, inputs, train=args.train, warmup=args.warmup, runs=args.runs)


def _plot_breakdown(args):
    from .plot_charts import breakdown

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    if len(chips) > 1:
        raise RooflineError(f"plot breakdown draws one chip, got --hardware {args.hardware!r}")
    _, report = _single_report(args, chips[0], _precision(args, precisions, chips[0]))
    return breakdown(report, style=args.style, top=args.top)


def _study_points(args, chips, precisions):
    """Points of --models x --batch on `chips`, measured on this machine with --measure."""
    from .study import Study, measure_points

    study = Study(names(args.models or DEFAULT_MODELS, "--models"), chips, _batches(args.batch, "1,8,64"),
                  args.precision or "fp32", seq=args.seq, image=args.image, chip_precisions=precisions,
                  use_cache=not args.no_cache)
    total = len(study.models) * len(study.batches) * (2 if args.measure else 1)
    with _progress(total, "study") as advance:
        points = study.points(advance)
        if args.measure:
            if "local" not in [c.id for c in chips]:
                raise RooflineError("--measure times models on this machine: add local to --hardware")
            points = measure_points(study, points, "local", args.warmup, args.runs, args.max_measure_s, advance)
    return study, points


def _plot_models(args):
    from .plot_charts import models_overview

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    _, points = _study_points(args, chips[:1], precisions)
    return models_overview(points)


def _plot_models_roofline(args):
    from .plot_roofline import models_roofline

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    if len(chips) > 1:
        raise RooflineError(f"plot models-roofline draws one chip, got --hardware {args.hardware!r}")
    study, points = _study_points(args, chips, precisions)
    return models_roofline(points, chips[0], study.precision_of(chips[0]).name)


def _plot_scatter(args):
    from .plot_charts import latency_scatter

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    if len(chips) > 1:
        raise RooflineError(f"plot scatter draws one chip, got --hardware {args.hardware!r}")
    _, points = _study_points(args, chips, precisions)
    return latency_scatter(points, chips[0].id, measured=args.measure)


def _plot_correlation(args):
    from .plot_charts import correlation_heatmap
    from .study import rank_correlations

    chips, precisions = _chips(args.hardware, "a100-80gb-sxm")
    _, points = _study_points(args, chips, precisions)
    return correlation_heatmap(rank_correlations(points, [c.id for c in chips]))


_KINDS = {"roofline": _plot_roofline, "chips": _plot_chips, "breakdown": _plot_breakdown, "models": _plot_models,
          "models-roofline": _plot_models_roofline, "scatter": _plot_scatter, "correlation": _plot_correlation}
