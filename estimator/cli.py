"""The `roofline` command line. Only this module prints.

    roofline estimate resnet50 --hardware a100-80gb-sxm --precision amp-bf16 --batch 64 --train
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rich.console import Console

from .cli_args import int_list, names
from .cli_cluster import add_options as add_cluster_options
from .cli_help import DefaultsFormatter, VersionAction
from .cli_plot import add_parsers as add_plot_parsers
from .cli_serve import add_parser as add_serve_parser
from .errors import RooflineError, UnsupportedOpError, did_you_mean
from .execution import EXECUTION_HELP, EXECUTIONS
from .optimizer import DEFAULT_OPTIMIZER, OPTIMIZERS
from .output_paths import check_output_file, json_text, write_json
from .precision import PRECISIONS
from .render_fit import FitTable, output_console



def _required(args) -> int:
    from .capture import capture
    from .errors import PrecisionError
    from .hardware import load_hardware
    from .model_source import load_model
    from .required import check_throughput, from_macs, from_step

    if args.model is None and args.macs is None:
        raise RooflineError("give a MODEL (a zoo name, FILE.py:FUNC, ...) whose MACs we count, or --macs N "
                            "(forward multiply-accumulates per sample, e.g. 4.112e9)")
    if args.model is not None and args.macs is not None:
        raise RooflineError(f"give MODEL {args.model!r} or --macs {args.macs:g}, not both: with a MODEL we count "
                            "its MACs ourselves")
    if args.macs is not None and (args.batch, args.seq, args.image) != (None, None, None):
        raise RooflineError("--batch, --seq and --image size a MODEL; --macs is already per sample, leave them out")
    check_throughput(args.throughput)
    precision = PRECISIONS[args.precision]
    chips = [load_hardware(chip.strip()) for chip in args.hardware.split(",") if chip.strip()]
    if not chips:
        raise RooflineError(f"--hardware {args.hardware!r} names no chip; give ids such as v100-pcie,a100-80gb-sxm")
    for hw in chips:  # fail before tracing if a chip lacks the precision
        try:
            hw.matrix_peak(precision)
        except PrecisionError as e:
            raise PrecisionError(f"{e}: pick another --precision or leave {hw.id} out of --hardware") from None
    if args.macs is not None:
        result = from_macs(args.macs, args.throughput, chips, precision, args.train)
    else:
        with Console(stderr=True).status(f"capturing {args.model}…"):
            model, inputs, name = load_model(args.model, batch=args.batch, seq=args.seq, image=args.image)
            step = capture(model, inputs, mode="train" if args.train else "inference", model_name=name)
        result = from_step(step, args.throughput, chips, precision)
    data = result.to_dict()
    if args.json == "-":
        print(json_text(data))
        return 0
    factor = "x 3 (train) " if result.train else "x 1 (inference) "
    table = FitTable()
    model_columns = ("traced ratio", "predicted util", "predicted samples/s/chip", "chips needed")
    # FitTable priorities (highest dropped first): the seed's 3x-rule answer, the peak and the prediction stay
    dropped_first = {"traced ratio": 4, "predicted util": 3, "precision": 2, "chips needed": 1}
    for col in ("chip", "precision", "peak TFLOPS", "3x-rule ratio") + (model_columns if result.model else ()):
        table.add_column(col, justify="left" if col in ("chip", "precision") else "right",
                         priority=dropped_first.get(col, 0), name=col == "chip")
    for c in result.chips:
        cells = [c.hardware, result.precision, f"{c.peak_flops_per_s / 1e12:,.4g}", f"{c.rule_peak_ratio:.1%}"]
        if result.model:
            cells += [f"{c.traced_peak_ratio:.1%}", f"{c.predicted_utilization:.1%}",
                      f"{c.predicted_samples_per_s:,.4g}", f"{c.chips_needed:,}"]
        table.add_row(*cells)
    out = output_console()
    if result.model:
        out.print(f"{result.model} · {'train' if result.train else 'inference'} · batch {result.batch}",
                  highlight=False)
    out.print(f"3x rule: {result.forward_macs_per_sample / 1e9:.4g} GMACs/sample x 2 FLOPs/MAC {factor}x "
              f"{result.target_samples_per_s:,.4g} samples/s = {result.rule_flops_per_s / 1e12:.4g} TFLOPS required",
              highlight=False)
    if result.model:
        out.print(f"traced:  {result.traced_flops_per_sample / 1e9:.4g} GFLOPs/sample (every op of the forward"
                  f"{', loss and backward' if result.train else ''}) x {result.target_samples_per_s:,.4g} samples/s = "
                  f"{result.traced_flops_per_s / 1e12:.4g} TFLOPS required", highlight=False)
    out.print(table)
    if args.json:
        write_json(Path(args.json), data)
        Console(stderr=True).print(f"wrote {args.json}")
    return 0


def main(argv: list[str] | None = None) -> int:
    _tolerant_streams()
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    err = Console(stderr=True)
    try:
        _check_options(args)
        return args.run(args)
    except RooflineError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)  # one line, however long
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the output stream failed (a full disk, a closed terminal)
        err.print(f"[bold red]error:[/] writing the output failed: {e.strerror or e}", highlight=False)
        return 1


def _tolerant_streams() -> None:
    """Titles use a middle dot and arrows: where the terminal's encoding lacks them
    (PYTHONIOENCODING=ascii), print a replacement character instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _check_options(args) -> None:
    """What argparse cannot see, before any work: output files, options that would be ignored."""
    if getattr(args, "json", None) not in (None, True, False, "-"):
        check_output_file("--json", args.json)
    if getattr(args, "hf_class", None) and not getattr(args, "hf_config", None):
        raise RooflineError("--hf-class picks the class of an --hf-config model; add --hf-config CONFIG or leave "
                            "--hf-class out")
    if getattr(args, "inputs", None) and not getattr(args, "hf_config", None):
        raise RooflineError("--inputs sets the input shapes of an --hf-config model; a zoo model takes --batch, "
                            "--seq and --image, and FILE.py:FUNC returns its own inputs")
    if getattr(args, "optimizer", None) is not None and not getattr(args, "train", True):
        raise RooflineError(f"--optimizer {args.optimizer} applies to a training step; add --train or leave it out")
    if getattr(args, "top", None) is not None and args.top < 0:
        raise RooflineError(f"--top must be 0 (every row) or a positive number of rows, got {args.top}")


def _add_step_inputs(parser: argparse.ArgumentParser, batch_help: str) -> None:
    """--precision, --batch, --seq and --image, as `estimate` and `required` take them."""
    parser.add_argument("--precision", default="fp32", choices=list(PRECISIONS), metavar="P",
                        help=f"one of {', '.join(PRECISIONS)} (default fp32)")
    parser.add_argument("--batch", type=int, help=batch_help)
    parser.add_argument("--seq", type=int, help="sequence length (token models; audio: waveform samples or "
                        "feature frames)")
    parser.add_argument("--image", type=int, help="image side in pixels (image models)")


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command's --help, not the whole usage."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)  # subparsers are of this class too
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message[:300]} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="roofline", description="Static roofline performance estimates "
                                     "for PyTorch models, forward and backward, on any chip.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)
    est = sub.add_parser("estimate", help="per-layer FLOPs, bytes, bounds and step time of a model on a chip")
    est.add_argument("model", nargs="?", help="zoo name (`roofline models` lists them), FILE.py:FUNC or "
                     "module:FUNC returning (model, example_inputs), torchvision:NAME or timm:NAME")
    est.add_argument("--hf-config", metavar="CONFIG", help="build a Hugging Face model from a local config.json, a "
                     "directory holding one, or a model id already in the local Hugging Face cache (on the meta "
                     "device, no download; needs transformers) instead of MODEL")
    est.add_argument("--hf-class", help="transformers class for --hf-config (default: the config's "
                     "architectures[0], else AutoModel)")
    est.add_argument("--inputs", metavar="FILE.json", help="input shapes for --hf-config by forward() argument "
                     "name, adding to or replacing those read from the signature and config, e.g. "
                     "{\"input_ids\": [1, 128], \"pixel_values\": {\"shape\": [1, 3, 384, 384]}}")
    est.add_argument("--hardware", help="chip id (see hardware/) or a YAML path; several separated by commas print "
                     "the chips side by side; with --gpus also a system id (hardware/systems/); default a100-80gb-sxm")
    est.add_argument("--moe-skew", type=float, default=1.0, metavar="S", help="routing assumption for "
                     "transformers' eager mixture-of-experts loops: the busiest expert gets S times the mean load "
                     "(default 1: balanced; grouped_mm and batched_mm experts do the same work for any routing)")
    est.add_argument("--max-batch", action="store_true", help="also search the largest batch whose step fits in "
                     "the chip's memory (several captures)")
    _add_step_inputs(est, batch_help="batch size (zoo models; default 1)")
    est.add_argument("--train", action="store_true", help="a training step: forward, loss, backward and the "
                     "optimizer's update")
    est.add_argument("--optimizer", choices=OPTIMIZERS, metavar="NAME",
                     help=f"optimizer of a training step: {', '.join(OPTIMIZERS)} (default {DEFAULT_OPTIMIZER})")
    est.add_argument("--execution", default="eager", choices=EXECUTIONS, metavar="MODE", help=EXECUTION_HELP)
    est.add_argument("--accumulate", type=int, default=1, metavar="N", help="gradient accumulation: N "
                     "micro-batches of --batch per optimizer step (default 1)")
    est.add_argument("--recompute", action="store_true", help="activation checkpointing per block: the backward "
                     "re-runs each repeated block's forward")
    est.add_argument("--by", default="layer", choices=("layer", "type", "op"), help="group rows by")
    est.add_argument("--depth", type=int, metavar="K", help="cut layer paths to K components (e.g. 2: layer1.0; "
                     "default: whole paths)")
    est.add_argument("--top", type=int, default=25, help="rows to show, largest time first (0: all)")
    est.add_argument("--json", metavar="FILE", help="also write the report as JSON (- for stdout only)")
    est.add_argument("--strict", action="store_true", help="fail if any op has no cost rule")
    est.add_argument("--no-cache", action="store_true", help="capture again instead of reading the step from the "
                     "disk cache of captured steps (`roofline cache info`), and do not write it there")
    add_cluster_options(est)
    est.set_defaults(run=_estimate)
    cache = sub.add_parser("cache", help="the disk cache of captured steps: `cache info`, `cache clear`")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True)
    cache_sub.add_parser("info", help="where the cache is, its entries and size").set_defaults(run=_cache_info)
    cache_sub.add_parser("clear", help="remove every cached step").set_defaults(run=_cache_clear)
    hw = sub.add_parser("hardware", help="the chip catalog: `hardware list`, `hardware show ID|FILE.yaml`, "
                        "`hardware systems`")
    hw_sub = hw.add_subparsers(dest="hardware_command", required=True)
    hw_list = hw_sub.add_parser("list", help="every chip: peaks, bandwidth, capacity, ridge point")
    hw_list.add_argument("--json", action="store_true", help="JSON in SI units (FLOP/s, bytes/s, bytes)")
    hw_list.set_defaults(run=_hardware_list)
    hw_show = hw_sub.add_parser("show", help="one chip with its sources")
    hw_show.add_argument("chip", help="a chip id, `local`, or the path of a YAML file")
    hw_show.add_argument("--json", action="store_true", help="JSON in SI units")
    hw_show.set_defaults(run=_hardware_show)
    hw_sys = hw_sub.add_parser("systems", help="multi-GPU systems and their networks (hardware/systems/)")
    hw_sys.add_argument("--json", action="store_true", help="JSON in SI units (bytes/s, seconds)")
    hw_sys.set_defaults(run=_hardware_systems)
    hw_schema = hw_sub.add_parser("schema", help="the JSON Schema of the hardware, system or host YAMLs, for editors "
                                  "(docs/hardware-schema.md)")
    hw_schema.add_argument("--kind", choices=("hardware", "system", "host"), default="hardware",
                           help="hardware (hardware/*.yaml, default), system (hardware/systems/) or host (hardware/hosts/)")
    hw_schema.add_argument("--out", help="write it to this file (.json) instead of printing it")
    hw_schema.add_argument("--force", action="store_true", help="with --out: overwrite an existing file")
    hw_schema.set_defaults(run=_hardware_schema)
    cal = sub.add_parser("calibrate", help="measure this machine's roofs and write the `local` hardware YAML")
    cal.add_argument("--quick", action="store_true", help="fewer sizes and repeats: under a minute")
    cal.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device to measure (default cpu)")
    cal.add_argument("--out", help="where to write the YAML (default: the user config location that "
                                   "`--hardware local` reads)")
    cal.add_argument("--network", action="store_true", help="measure this machine's loopback network instead (gloo "
                     "all-reduce between --nproc processes) and write the `local` system for `measure --nproc`")
    cal.add_argument("--nproc", type=int, default=2, metavar="N", help="with --network: processes (default 2)")
    cal.add_argument("--budget", type=float, metavar="SECONDS",
                     help="time the run may take (default 60 with --quick, else 300); probes that would "
                          "overrun it are cut short and listed")
    cal.set_defaults(run=_calibrate)
    meas = sub.add_parser("measure", help="time zoo models on this device and compare delivered TFLOPS with the "
                                          "peak and with our prediction")
    meas.add_argument("--model", required=True, help="comma-separated zoo names, e.g. resnet50,vit_b_16")
    meas.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    meas.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    meas.add_argument("--precision", default="fp32", choices=list(PRECISIONS), metavar="P",
                      help=f"one of {', '.join(PRECISIONS)} (default fp32)")
    meas.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    meas.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default 5)")
    meas.add_argument("--train", action="store_true", help="time full training steps (forward, loss, backward, AdamW)")
    meas.add_argument("--seq", type=int, help="sequence length (token models)")
    meas.add_argument("--image", type=int, help="image side (image models)")
    meas.add_argument("--peak", default="measured", choices=("measured", "datasheet"),
                      help="measured: the calibrated `local` chip (default); datasheet: the catalog chip of --hardware")
    meas.add_argument("--hardware", help="with --peak datasheet: the catalog chip whose peak and prediction to use")
    meas.add_argument("--nproc", type=int, metavar="N", help="time data-parallel training steps on N local processes "
                      "(torch.distributed: gloo on CPU) and compare with the prediction for that local cluster (needs "
                      "`calibrate` and `calibrate --network`); --batch is per process")
    meas.add_argument("--parallel", choices=("ddp", "fsdp"), help="with --nproc: DistributedDataParallel (default) or "
                      "FullyShardedDataParallel, one unit per repeated block")
    meas.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    meas.set_defaults(run=_measure)
    cmp_ = sub.add_parser("compare", help="measure a zoo model layer by layer here and set it beside the prediction")
    cmp_.add_argument("model", help="zoo name")
    cmp_.add_argument("--hardware", default="local", help="the chip to predict with (default: the calibrated local)")
    cmp_.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    cmp_.add_argument("--seq", type=int, help="sequence length (token models)")
    cmp_.add_argument("--image", type=int, help="image side (image models)")
    cmp_.add_argument("--train", action="store_true", help="a training step: forward, loss and backward")
    cmp_.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    cmp_.add_argument("--runs", type=int, default=5, help="timed steps; medians per layer (default 5)")
    cmp_.add_argument("--top", type=int, default=20, help="rows to show, largest error first (0: all)")
    cmp_.add_argument("--json", metavar="FILE", help="also write the comparison as JSON")
    cmp_.set_defaults(run=_compare)
    models = sub.add_parser("models", help="list the zoo: family, parameters, default input, forward GFLOPs")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    models.add_argument("--no-cache", action="store_true", help="capture every model again instead of reading the "
                        "disk cache of captured steps")
    models.set_defaults(run=_models)
    req = sub.add_parser("required", help="back of the envelope: the TFLOPS a throughput needs by the 3x rule and "
                                          "by our traced count, the peak ratio on each chip, and the chips it takes")
    req.add_argument("model", nargs="?", help="zoo name, FILE.py:FUNC, module:FUNC, torchvision:NAME or timm:NAME "
                     "(as for `estimate`); or give --macs instead")
    req.add_argument("--macs", type=float, help="forward multiply-accumulates per sample counted elsewhere "
                     "(e.g. 4.112e9: ResNet-50 by thop), instead of MODEL")
    req.add_argument("--throughput", type=float, required=True, metavar="SAMPLES_PER_S",
                     help="the target (or measured) throughput in samples/s")
    req.add_argument("--hardware", required=True, help="comma-separated chip ids (see hardware/) or YAML paths")
    _add_step_inputs(req, batch_help="batch size per chip of MODEL's step (default 1)")
    req.add_argument("--train", action="store_true", help="training: the 3x rule's factor 3 and a captured "
                                                          "training step (default: inference, factor 1)")
    req.add_argument("--json", metavar="FILE", help="also write the rows as JSON in SI units (- for stdout only)")
    req.set_defaults(run=_required)
    add_plot_parsers(sub)
    add_serve_parser(sub)
    return parser


def _hardware_list(args) -> int:
    from .hardware import catalog_and_local
    from .render_hardware import catalog_table

    chips = catalog_and_local()
    if args.json:
        print(json_text([hw.to_dict() for hw in chips]))
        return 0
    output_console().print(catalog_table(chips))
    return 0


def _hardware_systems(args) -> int:
    from .system import load_system, system_ids

    systems = [load_system(i) for i in system_ids()]
    if args.json:
        print(json_text([s.to_dict() for s in systems]))
        return 0
    table = FitTable(title="multi-GPU systems: achieved bus bandwidth per GPU (nccl-tests busbw), GB/s",
                     title_justify="left")
    dropped_first = {"ring": 3, "GPUs/node": 2, "NICs/node": 1}  # FitTable priorities
    for col in ("system", "chip", "GPUs/node", "in node: all-reduce", "ring", "between nodes", "NICs/node"):
        table.add_column(col, justify="left" if col in ("system", "chip") else "right",
                         priority=dropped_first.get(col, 0), name=col == "system")
    for s in systems:
        table.add_row(s.id, s.chip, str(s.gpus_per_node), f"{s.intra.bus_bytes_per_s / 1e9:,.0f}",
                      f"{s.intra.ring_bytes_per_s / 1e9:,.0f}",
                      f"{s.inter.bus_bytes_per_s / 1e9:,.0f}" if s.inter else "-",
                      str(s.inter.nics_per_node) if s.inter else "-")
    output_console().print(table)
    return 0


def _hardware_schema(args) -> int:
    import os

    from .hardware_schema import schema_text
    from .output_paths import check_output_file, write_text

    if args.force and not args.out:
        raise RooflineError("--force overwrites the file of --out; give --out FILE.json, or leave --force out")
    text = schema_text(args.kind)
    if not args.out:
        print(text, end="")
        return 0
    path = check_output_file("--out", args.out, (".json",))
    if os.path.lexists(path) and not args.force:
        raise RooflineError(f"--out {args.out!r}: the file exists; add --force to overwrite it, or pick another path")
    write_text(path, text)
    print(f"wrote the {args.kind} schema to {path}")
    return 0


def _hardware_show(args) -> int:
    from .hardware import load_hardware
    from .render_hardware import chip_sheet

    hw = load_hardware(args.chip)
    if args.json:
        print(json_text(hw.to_dict()))
        return 0
    output_console().print(chip_sheet(hw))
    return 0


def _calibrate(args) -> int:
    """Validate --out and --budget, measure (progress lines on stderr, or a live display on a
    terminal), write the YAML atomically; Ctrl-C leaves the old file as it was and exits 130."""
    from pathlib import Path

    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .calibrate import PLANS, calibrate, check_output_path, summary_lines, write_hardware_yaml
    from .hardware import local_hardware_path, parse_hardware

    if args.budget is not None and not args.budget > 0:
        raise RooflineError(f"--budget takes seconds greater than 0, got {args.budget:g}; e.g. --budget 60")
    if args.network:
        return _calibrate_network(args)
    if args.nproc != 2:
        raise RooflineError("--nproc sets the processes of --network; add --network or leave --nproc out")
    out_path = check_output_path(Path(args.out)) if args.out else check_output_path(local_hardware_path(), True)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise RooflineError("--device cuda: no CUDA device is visible to torch here; use --device cpu")
    budget = args.budget or PLANS["quick" if args.quick else "full"].budget_s
    err = Console(stderr=True)
    err.print(f"measuring {args.device} with {torch.get_num_threads()} threads ({'quick' if args.quick else 'full'} "
              f"run, budget {budget:g} s)", highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn())
    try:
        with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
            status = progress.add_task("starting", total=None)
            say = ((lambda line: progress.update(status, description=line)) if err.is_terminal
                   else (lambda line: print(line, file=sys.stderr, flush=True)))
            doc = calibrate(device=args.device, quick=args.quick, progress=progress, budget_s=budget, say=say)
        write_hardware_yaml(doc, out_path, validate=parse_hardware)  # it must load under the strict schema
    except KeyboardInterrupt:
        err.print(f"interrupted; nothing written ({out_path} is as it was)", highlight=False, soft_wrap=True)
        return 130
    for line in summary_lines(doc):
        print(line)
    hint = "--hardware local" if out_path == local_hardware_path() else f"--hardware {out_path}"
    print(f"wrote {out_path}; use it with {hint}")
    return 0


def _calibrate_network(args) -> int:
    """`calibrate --network`: loopback all-reduce between processes, written as the `local` system."""
    from .calibrate import calibrate_network, check_output_path
    from .distributed_launch import check_nproc
    from .system import local_system_path, write_system_yaml

    if args.quick or args.device != "cpu":
        raise RooflineError("--network measures gloo over loopback between CPU processes; leave --quick and "
                            "--device out")
    check_nproc(args.nproc)
    out_path = check_output_path(Path(args.out)) if args.out else check_output_path(local_system_path(), True)
    err = Console(stderr=True)
    err.print(f"measuring all-reduce between {args.nproc} local processes (gloo, loopback)", highlight=False)
    try:
        doc = calibrate_network(args.nproc, args.budget or 60, say=lambda line: print(line, file=sys.stderr,
                                                                                     flush=True))
        out_path.parent.mkdir(parents=True, exist_ok=True)  # the default location's folders, checked above
        write_system_yaml(doc, out_path)
    except KeyboardInterrupt:
        err.print(f"interrupted; nothing written ({out_path} is as it was)", highlight=False, soft_wrap=True)
        return 130
    tier = doc["network"]["intra_node"]
    print(f"loopback all-reduce: {doc['network']['base_latency_us']:,.0f} us per call + bus bandwidth "
          f"{tier['bus_bandwidth_gbps']:.3g} GB/s ({args.nproc} processes)")
    hint = "--system local" if out_path == local_system_path() else f"--system {out_path}"
    print(f"wrote {out_path}; `measure --nproc` uses it (or {hint})")
    return 0


def _measure_cluster(args, models: list[str], batches: list[int]) -> int:
    """`measure --nproc N`: time data-parallel steps here and set them beside the local prediction."""
    from .hardware import load_hardware
    from .local_cluster import predict_local
    from .measure_cluster import measure_cluster
    from .system import load_system

    if not args.train:
        raise RooflineError("--nproc times data-parallel training steps; add --train")
    if args.precision != "fp32" or args.device != "cpu" or args.peak != "measured" or args.hardware:
        raise RooflineError("--nproc runs fp32 on this machine's CPU against the calibrated local chip; leave "
                            "--precision, --device, --peak and --hardware out")
    parallel = args.parallel or "ddp"
    hardware, system = load_hardware("local"), load_system("local")  # both measured first, or a message saying so
    err = Console(stderr=True)
    rows = []
    for name in models:
        for batch in batches:
            with err.status(f"predicting {name} on {args.nproc} processes…"):
                predicted = predict_local(name, args.nproc, parallel, batch, seq=args.seq, image=args.image,
                                          hardware=hardware, system=system)
            with err.status(f"timing {name}, {args.nproc} processes x batch {batch} ({parallel})…"):
                measured = measure_cluster(name, args.nproc, parallel, batch, seq=args.seq, image=args.image,
                                           warmup=args.warmup, runs=args.runs)
            with err.status(f"timing {name} in one process with {measured.threads_per_process} thread(s)…"):
                alone = _one_process_step_s(name, batch, args, measured.threads_per_process)
            rows.append({**measured.to_dict(), "predicted_step_s": predicted.step_time_s,
                         "one_process_step_s": alone, "predicted_one_process_step_s": predicted.compute_s,
                         "predicted_communication_s": predicted.communication_s,
                         "predicted_communication_exposed_s": predicted.communication_exposed_s,
                         "error": predicted.step_time_s / measured.step_s - 1})
            err.print(f"  {name} batch {batch}: measured {measured.step_s * 1e3:,.1f} ms ({alone * 1e3:,.1f} in one "
                      f"process), predicted {predicted.step_time_s * 1e3:,.1f} ms ({predicted.compute_s * 1e3:,.1f})",
                      highlight=False)
    table = FitTable(title=f"data-parallel training on {args.nproc} local processes ({parallel}, gloo, "
                        f"{rows[0]['threads_per_process']} thread(s) each)", title_justify="left")
    for i, col in enumerate(("model", "batch/process", "measured ms", "spread", "predicted ms", "error",
                             "1 process: measured ms", "predicted ms", "added by the cluster: measured ms",
                             "predicted ms")):  # FitTable priorities: spread, then the one-process pair, go first
        table.add_column(col, justify="left" if col == "model" else "right", name=col == "model",
                         priority=3 if col == "spread" else 2 if i in (6, 7) else 0)
    for r in rows:
        table.add_row(r["model"], str(r["batch_per_process"]), f"{r['step_s'] * 1e3:,.1f}", f"{100 * r['spread']:.0f}%",
                      f"{r['predicted_step_s'] * 1e3:,.1f}", f"{100 * r['error']:+.1f}%",
                      f"{r['one_process_step_s'] * 1e3:,.1f}", f"{r['predicted_one_process_step_s'] * 1e3:,.1f}",
                      f"{(r['step_s'] - r['one_process_step_s']) * 1e3:,.1f}",
                      f"{r['predicted_communication_exposed_s'] * 1e3:,.1f}")
    table.caption = ("1 process: the same step alone with the threads each process had; added by the cluster: the "
                     "step minus that (communication, and on a CPU the cores it takes from compute)")
    table.caption_justify = "left"
    output_console().print(table)
    if args.json:
        write_json(Path(args.json), rows)
        err.print(f"wrote {args.json}")
    return 0


def _one_process_step_s(name: str, batch: int, args, threads: int) -> float:
    """Median training step of `name` in this process with `threads` threads (the baseline of a
    data-parallel run whose processes had that many each)."""
    import torch

    from .measure import measure

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return measure(name, batch, train=True, warmup=args.warmup, runs=args.runs, seq=args.seq,
                       image=args.image).latency_s
    finally:
        torch.set_num_threads(before)


def _measure(args) -> int:
    import torch

    import roofline_zoo

    from .hardware import load_hardware
    from .measure import efficiency_table_rows, measure

    batches = int_list(args.batch, "--batch")
    models = names(args.model, "--model")
    unknown = [m for m in models if m not in roofline_zoo.ZOO]
    if unknown:  # before the first measurement, not after it
        raise RooflineError(f"--model {unknown[0][:80]!r} is not a zoo model{did_you_mean(unknown[0], list(roofline_zoo.ZOO))}"
                            "; `roofline models` lists them")
    if args.nproc is not None:
        return _measure_cluster(args, models, batches)
    if args.parallel:
        raise RooflineError("--parallel applies to --nproc N runs; add --nproc or leave --parallel out")
    if args.peak == "datasheet":
        if not args.hardware or args.hardware == "local":
            raise RooflineError("--peak datasheet needs --hardware ID of a catalog chip (`roofline hardware list`)")
        hardware = load_hardware(args.hardware)
    else:
        if args.hardware and args.hardware != "local":
            raise RooflineError(f"--hardware {args.hardware} needs --peak datasheet; the measured peak is `local`")
        hardware = None  # the calibrated local chip, or a message saying to calibrate
    err = Console(stderr=True)
    err.print(f"device {args.device}, precision {args.precision}, {torch.get_num_threads()} threads, "
              f"warmup {args.warmup}, runs {args.runs}, {'training steps' if args.train else 'inference'}")
    measurements = []
    for name in models:
        for batch in batches:
            with err.status(f"measuring {name} batch {batch}…"):
                m = measure(name, batch, device=args.device, precision=args.precision, train=args.train,
                            warmup=args.warmup, runs=args.runs, hardware=hardware, seq=args.seq, image=args.image)
            err.print(f"  {name} batch {batch}: {m.delivered_flops_per_s / 1e12:.3f} TFLOPS, "
                      f"efficiency {100 * m.efficiency:.1f}%")
            measurements.append(m)
    rows = efficiency_table_rows(measurements)
    table = FitTable(title=f"model efficiency on {measurements[0].hardware} ({args.device}, "
                           f"{measurements[0].threads} threads)", title_justify="left")
    dropped_first = {"spread": 4, "precision": 3, "GFLOPs": 2, "peak TFLOPS": 1}  # FitTable priorities
    for col in ("model", "batch", "precision", "GFLOPs", "latency ms", "delivered TFLOPS", "peak TFLOPS",
                "efficiency", "predicted ms", "error", "spread"):
        table.add_column(col, justify="left" if col in ("model", "precision") else "right",
                         priority=dropped_first.get(col, 0), name=col == "model")
    for r in rows:
        table.add_row(r["model"], str(r["batch"]), r["precision"], f"{r['flops'] / 1e9:,.1f}",
                      f"{r['latency_s'] * 1e3:,.2f}", f"{r['delivered_flops_per_s'] / 1e12:.3f}",
                      f"{r['peak_flops_per_s'] / 1e12:.3g}", f"{r['efficiency']:.1%}", f"{r['predicted_s'] * 1e3:,.2f}",
                      f"{r['error']:+.1%}", f"{r['spread']:.1%}")
    out = output_console()
    out.print(table)
    mean_eff = sum(r["efficiency"] for r in rows) / len(rows)
    mape = 100 * sum(abs(r["error"]) for r in rows) / len(rows)
    out.print(f"average efficiency {100 * mean_eff:.1f}%; prediction error (MAPE) {mape:.1f}% over {len(rows)} runs")
    out.print("GFLOPs are real FLOPs (1 multiply-accumulate = 2 FLOPs) of exactly what was timed, counted by "
              "torch-roofline; tools that report GMACs as 'GFLOPs' show half.")
    if args.json:
        write_json(Path(args.json), rows)
        err.print(f"wrote {args.json}")
    return 0


def _compare(args) -> int:
    import torch

    import roofline_zoo

    from .capture import capture
    from .compare import compare, measure_layers
    from .hardware import load_hardware
    from .model_source import load_model
    from .report import evaluate

    if args.runs < 1 or args.warmup < 0:
        raise RooflineError(f"--runs must be at least 1 and --warmup at least 0, got {args.runs} and {args.warmup}")
    hardware = load_hardware(args.hardware)
    mode = "train" if args.train else "inference"
    err = Console(stderr=True)
    if ":" in args.model:
        raise RooflineError("compare runs zoo models only (it needs real weights); see `roofline models`")
    model, inputs, name = load_model(args.model, batch=args.batch, seq=args.seq, image=args.image)
    report = evaluate(capture(model, inputs, mode=mode, model_name=name, optimizer=None), hardware, "fp32")
    real_model, real_inputs = roofline_zoo.get(args.model).build(batch=args.batch, image=args.image, seq=args.seq,
                                                                 device="cpu")
    with err.status(f"timing {name} layer by layer ({args.warmup} warm-up + {args.runs} steps, "
                    f"{torch.get_num_threads()} threads)…"):
        measured = measure_layers(real_model, real_inputs, train=args.train, warmup=args.warmup, runs=args.runs)
    result = compare(report, measured, train=args.train)
    rows = result.rows if args.top <= 0 else result.rows[:args.top]
    table = FitTable(title=f"{name} · {hardware.id} · fp32 · {mode} · batch {args.batch}: predicted vs measured "
                           f"per layer (largest error first)", title_justify="left")
    for col in ("layer", "type", "predicted ms", "measured ms", "ratio", "bound"):
        table.add_column(col, justify="left" if col in ("layer", "type", "bound") else "right", name=col == "layer",
                         priority={"type": 2, "bound": 1}.get(col, 0))
    for r in rows:
        ratio = f"{r.ratio:.2f}" if r.measured_s > 0 else "-"
        table.add_row(r.name, r.type, f"{r.predicted_s * 1e3:,.2f}", f"{r.measured_s * 1e3:,.2f}", ratio, r.bound)
    if len(result.rows) > len(rows):
        table.caption = f"{len(result.rows) - len(rows)} more rows (--top 0 shows all)"
    out = output_console()
    out.print(table)
    out.print(f"step: predicted {result.predicted_total_s * 1e3:,.1f} ms, measured {result.measured_total_s * 1e3:,.1f} "
              f"ms (median of {args.runs} steps per layer, on a machine others may share)")
    out.print(f"time-weighted mean absolute error over layers {100 * result.weighted_mae:.1f}%; "
              f"Spearman rank correlation of predicted vs measured {result.spearman:.3f}")
    if args.json:
        write_json(Path(args.json), result.to_dict())
        err.print(f"wrote {args.json}")
    return 0


def _cache_info(args) -> int:
    from .step_cache import cache_dir, usage

    files, size = usage()
    print(f"{cache_dir()}: {files:,} cached steps, {size / 1e6:,.1f} MB (ROOFLINE_CACHE_DIR moves it; "
          "`roofline cache clear` empties it)")
    return 0


def _cache_clear(args) -> int:
    from .step_cache import cache_dir, clear

    try:
        files, size = clear()
    except OSError as e:
        raise RooflineError(f"clearing the step cache {cache_dir()} failed: {e.strerror or e}") from None
    print(f"removed {files:,} cached steps ({size / 1e6:,.1f} MB) from {cache_dir()}")
    return 0


def _models(args) -> int:
    from rich.progress import Progress

    import roofline_zoo

    from .model_source import zoo_summary
    from .parallel_work import finished, usable_cores, worker_pool

    names = sorted(roofline_zoo.ZOO, key=lambda n: (roofline_zoo.get(n).family, n))
    by_name = {}
    with worker_pool(min(usable_cores(), len(names))) as pool, \
            Progress(console=Console(stderr=True), transient=True) as progress:  # the workers start before the bar
        task = progress.add_task("capturing zoo models", total=len(names))
        jobs = {pool.submit(zoo_summary, name, not args.no_cache): name for name in names}
        for job in finished(jobs):
            by_name[jobs[job]] = job.result()
            progress.update(task, advance=1, description=f"captured {jobs[job]}")
    rows = [by_name[name] for name in names]
    if args.json:
        print(json_text(rows))
        return 0
    table = FitTable(title=f"model zoo ({len(rows)} models); forward GFLOPs at batch 1, default input",
                     title_justify="left")
    for col, justify, priority in (("name", "left", 0), ("family", "left", 2), ("parameters", "right", 0),
                                   ("default input", "left", 1), ("fwd GFLOPs", "right", 0)):
        table.add_column(col, justify=justify, priority=priority, name=col == "name")
    for r in rows:
        table.add_row(r["name"], r["family"], f"{r['parameters']:,}", r["default_input"],
                      f"{r['forward_flops'] / 1e9:,.2f}")
    output_console().print(table)
    return 0


def _capture_step(args, settings: dict):
    """The model of `args` built and captured with `settings` (estimator.step_cache.capture_settings)."""
    from .capture import capture
    from .model_source import load_hf_config, load_model
    from .step_cache import capture_options

    batch = settings["batch"]
    if args.hf_config:
        model, inputs, name = load_hf_config(args.hf_config, args.hf_class, batch, args.seq, args.image, args.inputs)
    else:
        model, inputs, name = load_model(args.model, batch=batch, seq=args.seq, image=args.image)
    return capture(model, inputs, model_name=name, **capture_options(settings))


def _estimate(args) -> int:
    from .chips import side_by_side
    from .cli_cluster import check_options as check_cluster_options, does_not_fit, resolve_system, run as run_cluster, \
        wants_cluster
    from .device_dispatch import dispatch_for
    from .execution import check_execution
    from .hardware import load_hardware
    from .memory import max_batch, step_memory
    from .render import full_report
    from .step_cache import cached_capture, capture_settings, model_identity
    from .render_plan import does_not_fit_advice, memory_line, side_by_side_table
    from .report import evaluate

    out = output_console()
    err = Console(stderr=True)
    system = None
    if wants_cluster(args):
        check_cluster_options(args)
        system, chip = resolve_system(args)
        args.hardware = chip
    args.hardware = "a100-80gb-sxm" if args.hardware is None else args.hardware
    chips = [load_hardware(chip.strip()) for chip in args.hardware.split(",") if chip.strip()]
    if not chips:
        raise RooflineError(f"--hardware {args.hardware!r} names no chip; give an id such as h100-sxm, or several "
                            "separated by commas")
    precision = PRECISIONS[args.precision]
    for hardware in chips:
        hardware.matrix_peak(precision)  # fail before tracing if a chip lacks the precision
        check_execution(args.execution, hardware)
    if args.depth is not None and args.depth < 1:
        raise RooflineError(f"--depth must be at least 1, got {args.depth}")
    if args.accumulate < 1:
        raise RooflineError(f"--accumulate must be at least 1 (micro-batches per optimizer step), got {args.accumulate}")
    if (args.accumulate > 1 or args.recompute) and not args.train:
        raise RooflineError("--accumulate and --recompute apply to training steps; add --train")
    if (args.model is None) == (args.hf_config is None):
        raise RooflineError("give a MODEL (a zoo name, FILE.py:FUNC, ...) or --hf-config config.json, not both")
    mode = "train" if args.train else "inference"
    captured = {}

    def capture_at(batch: int | None, recompute: bool = args.recompute):
        """The step at `batch` (None: the model's default; cached, so the max-batch searches of
        several chips and the layout search share their probes)."""
        if (batch, recompute) not in captured:
            settings = capture_settings(batch, args.seq, args.image, mode, args.optimizer or DEFAULT_OPTIMIZER,
                                        args.accumulate, recompute, dispatch_for(chip.kind for chip in chips),
                                        args.moe_skew)
            identity = None if args.no_cache else model_identity(args.model, args.hf_config, args.hf_class,
                                                                 args.inputs)
            step = cached_capture(identity, settings, lambda: _capture_step(args, settings))
            if batch is not None and step.batch != batch:
                raise RooflineError(f"{step.model_name} ignores the batch size (asked {batch}, built {step.batch}), so "
                                    "the largest batch that fits cannot be searched: give a zoo model, --hf-config, "
                                    "or a FUNC that takes batch=")
            captured[(batch, recompute)] = step
        return captured[(batch, recompute)]

    if wants_cluster(args):
        data, shown = run_cluster(args, capture_at, chips[0], system, precision, err)
        if args.json != "-":
            for item in shown:
                out.print(item)
        if args.json == "-":
            print(json_text(data))
        elif args.json:
            write_json(Path(args.json), data)
            err.print(f"wrote {args.json}")
        if not data["cluster"]["fits"]:
            raise RooflineError(does_not_fit(data, chips[0].memory_capacity_bytes))
        return 0
    with err.status(f"capturing {args.model or args.hf_config}…"):
        step = capture_at(args.batch)
    memory = None
    if len(chips) > 1:
        with err.status("memory and the largest batch per chip…"):
            rows = side_by_side(step, chips, precision, capture_at, args.execution)
        peak_bytes = rows[0].peak_bytes
        data = {"model": step.model_name, "precision": precision.name, "mode": step.mode, "batch": step.batch,
                "tokens_per_sample": step.tokens_per_sample, "chips": [r.to_dict() for r in rows]}
        if args.json != "-":
            out.print(side_by_side_table(step, precision, rows))
    else:
        hardware = chips[0]
        report = evaluate(step, hardware, precision, args.execution)
        unsupported = report.unsupported()
        if args.strict and unsupported:
            listed = ", ".join(f"{u['op']} x{u['count']}" for u in unsupported)
            raise UnsupportedOpError(f"{len(unsupported)} op(s) have no cost rule: {listed} (drop --strict to "
                                     "estimate anyway with their traffic charged and FLOPs unknown)")
        memory = step_memory(step, precision, optimizer=step.optimizer)
        peak_bytes = memory.peak_bytes
        biggest = None
        if args.max_batch:
            with err.status("searching the largest batch that fits…"):
                biggest = max_batch(capture_at, hardware.memory_capacity_bytes, precision, optimizer=step.optimizer,
                                   known=step)
        data = report.to_dict(args.by, args.depth)
        data["memory"] = {"parameters_bytes": memory.parameters_bytes, "gradients_bytes": memory.gradients_bytes,
                          "optimizer_bytes": memory.optimizer_bytes, "activations_bytes": memory.activations_bytes,
                          "kv_cache_bytes": memory.kv_cache_bytes,
                          "peak_bytes": memory.peak_bytes, "capacity_bytes": hardware.memory_capacity_bytes,
                          "fits": memory.peak_bytes <= hardware.memory_capacity_bytes, "max_batch": biggest}
        if args.json != "-":
            out.print(full_report(report, args.by, args.depth, args.top))
            out.print(memory_line(memory, hardware, biggest))
    if args.json == "-":
        print(json_text(data))
    elif args.json:
        write_json(Path(args.json), data)
        err.print(f"wrote {args.json}")
    if peak_bytes > max(c.memory_capacity_bytes for c in chips):  # fits nowhere: say so, after the numbers
        raise RooflineError(does_not_fit_advice(memory or step_memory(step, precision, optimizer=step.optimizer), step,
                                                chips))
    return 0


if __name__ == "__main__":
    sys.exit(main())
