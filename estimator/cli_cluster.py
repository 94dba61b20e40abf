"""`roofline estimate ... --gpus N --parallel LAYOUT`: options and the run of a cluster prediction.
Only the CLI layer: estimator.cluster predicts, estimator.render_cluster draws.

    roofline estimate llama3_70b --hardware dgx-h100 --precision amp-bf16 --seq 8192 --train \\
        --gpus 64 --parallel tp=8,pp=2,dp=4,sp --train-tokens 1e12
"""
from __future__ import annotations

import argparse
import dataclasses
import math

from .errors import LayoutError, RooflineError

CLUSTER_OPTIONS = ("gpus", "parallel", "gpus_per_node", "system", "search", "global_batch", "train_tokens",
                   "price_per_gpu_hour")


def add_options(est: argparse.ArgumentParser) -> None:
    est.add_argument("--gpus", type=int, metavar="N", help="predict the training step on N GPUs (default 1)")
    est.add_argument("--parallel", metavar="LAYOUT", help="how the step is split: ddp (default), zero1, zero2, zero3, "
                     "fsdp, or tp=T,pp=P,dp=D[,ep=E][,sp][,fsdp|zero1|...] (Megatron-style tensor, pipeline, "
                     "expert and data parallel; tp x pp x dp = --gpus, dp may be left out)")
    est.add_argument("--gpus-per-node", type=int, metavar="N", help="GPUs that share a node's fast links (default: "
                     "the system's)")
    est.add_argument("--system", metavar="ID|FILE", help="the multi-GPU system and its network (hardware/systems/; "
                     "default: the catalog system built on --hardware's chip; `local` after calibrate --network)")
    est.add_argument("--search", action="store_true", help="rank the layouts (and micro-batch, recompute) that fit "
                     "on --gpus GPUs by throughput at a fixed global batch")
    est.add_argument("--global-batch", type=int, metavar="N", help="samples per optimizer step over all GPUs "
                     "(default --batch x --accumulate x the data-parallel size)")
    est.add_argument("--train-tokens", type=float, metavar="T", help="also give the days, GPU-hours (and cost) "
                     "to train on T tokens, e.g. 1e12")
    est.add_argument("--price-per-gpu-hour", type=float, metavar="USD", help="price of one GPU-hour for the cost "
                     "of --train-tokens (default: the system's, where it has one)")


def wants_cluster(args) -> bool:
    return any(getattr(args, name) is not None and getattr(args, name) is not False for name in CLUSTER_OPTIONS)


def check_options(args) -> None:
    """Cluster options that cannot work together, before any capture."""
    if args.gpus is not None and not 1 <= args.gpus <= 1 << 20:
        raise LayoutError(f"--gpus takes a number of GPUs from 1, got {args.gpus}")
    if args.gpus_per_node is not None and not 1 <= args.gpus_per_node <= 1024:
        raise LayoutError(f"--gpus-per-node takes 1 to 1024 GPUs, got {args.gpus_per_node}")
    if not args.train:
        raise RooflineError("--gpus, --parallel, --search and --train-tokens predict a training step; add --train")
    if args.hardware and "," in args.hardware:
        raise RooflineError("a cluster prediction runs on one kind of chip; give one --hardware (or --system)")
    if args.train_tokens is not None and not (args.train_tokens > 0 and math.isfinite(args.train_tokens)):
        raise RooflineError(f"--train-tokens takes a positive number of tokens, e.g. 1e12, got {args.train_tokens:g}")
    if args.price_per_gpu_hour is not None:
        if args.train_tokens is None:
            raise RooflineError("--price-per-gpu-hour prices a training run; add --train-tokens T")
        if not (args.price_per_gpu_hour > 0 and math.isfinite(args.price_per_gpu_hour)):
            raise RooflineError(f"--price-per-gpu-hour takes a positive price in US$, got {args.price_per_gpu_hour:g}")
    if args.global_batch is not None and args.global_batch < 1:
        raise RooflineError(f"--global-batch takes a positive number of samples, got {args.global_batch}")
    if args.search and args.parallel:
        raise RooflineError("--search tries every layout itself; leave --parallel out (or drop --search)")
    if args.max_batch:
        raise RooflineError("--max-batch searches one chip; with --gpus use --search, which also picks the micro-batch")


def resolve_system(args):
    """(system or None, chip id): --system, or --hardware naming a system, or the chip's catalog system."""
    from .system import load_system, system_ids, systems_for_chip

    spec = args.system or (args.hardware if args.hardware in system_ids() else None)
    if spec:
        system = load_system(spec)
        if args.hardware and args.hardware != spec and args.hardware != system.chip:
            raise RooflineError(f"--hardware {args.hardware} differs from system {system.id}'s chip {system.chip}; "
                                "leave --hardware out or give that chip")
        return system, system.chip
    chip = "a100-80gb-sxm" if args.hardware is None else args.hardware.strip()
    if not chip:
        raise RooflineError("--hardware '' names no chip; give a chip or system id such as h100-sxm or dgx-h100")
    found = systems_for_chip(chip)
    if found:
        return found[0], chip
    if (args.gpus or 1) > 1:
        raise RooflineError(f"no multi-GPU system in the catalog is built on {chip}; give --system ID|FILE.yaml "
                            f"(`hardware/systems/`) naming its network")
    return None, chip


def run(args, capture_at, hardware, system, precision, err) -> tuple[dict, list]:
    """Predict (or search), returning the JSON data and the renderables to print."""
    from .cluster import predict_cluster
    from .cluster_search import fewest_gpus_that_fit, search_layouts
    from .parallel_layout import parse_layout
    from .render_cluster import cluster_summary, search_table, unit_table

    gpus = args.gpus or 1
    per_node = args.gpus_per_node or (system.gpus_per_node if system else gpus)
    layout = None if args.search else parse_layout("ddp" if args.parallel is None else args.parallel, gpus)
    with err.status(f"capturing {args.model or args.hf_config}…"):
        step = capture_at(args.batch, args.recompute)
    model = step.model_name
    if args.search:
        global_batch = args.global_batch or step.batch * step.accumulate * gpus
        with err.status("trying layouts…") as status:
            ranked = search_layouts(lambda micro, recompute: capture_at(micro, recompute), system, hardware,
                                    precision, gpus, global_batch, per_node, args.execution,
                                    say=lambda line: status.update(line), known=step)
        if not ranked:
            raise RooflineError(_nothing_fits(step, precision, hardware, per_node, gpus))
        best = ranked[0]
        data = {"model": model, "precision": precision.name, "mode": step.mode, "cluster": best.to_dict(),
                "search": [r.to_dict() for r in ranked]}
        shown = [search_table(ranked, model, args.top or len(ranked)), cluster_summary(best, model)]
        return _with_run(args, data, shown, best, system, model)
    if args.global_batch is not None:
        per_replica = step.batch * layout.dp
        if args.global_batch % per_replica:
            raise LayoutError(f"--global-batch {args.global_batch} is not a multiple of --batch {step.batch} x dp "
                              f"{layout.dp} = {per_replica}; give a multiple, or another --batch")
        if args.accumulate > 1:
            raise RooflineError("--global-batch sets the micro-batches per step; leave --accumulate out")
        step = dataclasses.replace(step, accumulate=args.global_batch // per_replica)
    result = predict_cluster(step, system, hardware, precision, layout, per_node, args.execution)
    data = {"model": model, "precision": precision.name, "mode": step.mode, "batch": step.batch,
            "cluster": result.to_dict()}
    data, shown = _with_run(args, data, [unit_table(result, min(args.top, 8) if args.top else 0),
                                         cluster_summary(result, model)], result, system, model)
    if not result.fits:
        found = fewest_gpus_that_fit(step, precision, hardware.memory_capacity_bytes, per_node)
        data["cluster"]["fewest_gpus_that_fit"] = {"gpus": found[0], "layout": found[1].name} if found else None
    return data, shown


def does_not_fit(data: dict, capacity_bytes: int) -> str:
    """The one line after the numbers when the layout does not fit, with the fewest GPUs that do."""
    c = data["cluster"]
    found = c.get("fewest_gpus_that_fit")
    advice = (f"; the fewest GPUs that fit: --gpus {found['gpus']} --parallel {_as_option(found['layout'])}" if found
              else "; no layout up to 65,536 GPUs fits")
    return (f"{data['model']} needs {c['memory_per_gpu_bytes'] / 1e9:,.1f} GB per GPU as {c['layout']}, more than the "
            f"{capacity_bytes / 1e9:,.0f} GB each has{advice} (or --recompute, a smaller --batch)")


def _as_option(name: str) -> str:
    """A layout's display name ("fsdp tp=2 dp=4 sp") as --parallel text ("tp=2,dp=4,sp,fsdp")."""
    words = name.replace(",", " ").split()
    return ",".join(words[1:] + [words[0]])


def _with_run(args, data, shown, result, system, model):
    """Add the --train-tokens run (days, GPU-hours, cost) to the data and the summary."""
    from .render_cluster import cluster_summary
    from .training_run import training_run

    if args.train_tokens is None:
        return data, shown
    price = args.price_per_gpu_hour if args.price_per_gpu_hour is not None else (
        system.price_per_gpu_hour if system else None)
    tokens_per_step = result.samples_per_step * (result.tokens_per_sample or 0)
    run = training_run(args.train_tokens, tokens_per_step, result.step_time_s, result.gpus, price)
    run["usd_per_gpu_hour"] = price
    data["training_run"] = run
    shown[-1] = cluster_summary(result, model, run)
    return data, shown


def _nothing_fits(step, precision, hardware, per_node, gpus) -> str:
    from .cluster_search import fewest_gpus_that_fit

    found = fewest_gpus_that_fit(step, precision, hardware.memory_capacity_bytes, per_node)
    more = f"; the fewest GPUs that fit are {found[0]} as {found[1].name}" if found else ""
    return f"no layout of {step.model_name} fits on {gpus} x {hardware.id} ({hardware.memory_capacity_bytes / 1e9:,.0f} " \
           f"GB each) at this global batch{more}"
