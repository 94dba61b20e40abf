"""`roofline serve`: an LLM's prefill and decode as served, per batch of users (estimator.serving).

    roofline serve llama3_8b --hardware h100-sxm --precision bf16 --prompt 2048 --generate 256 --batch 1,8,32,128
"""
from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .cli_args import int_list
from .errors import RooflineError
from .execution import EXECUTION_HELP, EXECUTIONS
from .precision import PRECISIONS
from .render_fit import FitTable, output_console


def add_parser(sub) -> None:
    serve = sub.add_parser("serve", help="LLM serving: time to first token, time per output token, tokens/s per user "
                                         "and per GPU, KV cache and the users that fit")
    serve.add_argument("model", nargs="?", help="a zoo decoder (gpt2, llama2_7b, llama3_8b, llama3_70b, mistral_7b, "
                       "mixtral_8x7b) or FILE.py:FUNC returning a transformers causal LM")
    serve.add_argument("--hf-config", metavar="CONFIG", help="a Hugging Face causal LM from a local config.json, a "
                       "directory holding one, or a model id in the local cache (meta device, no download)")
    serve.add_argument("--hf-class", help="transformers class for --hf-config (default: its architectures[0])")
    serve.add_argument("--hardware", default="h100-sxm", help="chip id(s), comma-separated: one table each and one "
                       "line each in --plot (default h100-sxm)")
    serve.add_argument("--precision", default="bf16", choices=list(PRECISIONS), metavar="P",
                       help=f"activations and unquantised weights: one of {', '.join(PRECISIONS)} (default bf16)")
    serve.add_argument("--weights", default="auto", metavar="FORMAT", help="weight-only quantisation: auto (the "
                       "precision), int8, int4 (AWQ/GPTQ groups of 128) or fp8 (default auto)")
    serve.add_argument("--kv-cache", default="auto", metavar="FORMAT", help="KV cache format: auto (the precision), "
                       "fp8 or int8 (default auto)")
    serve.add_argument("--prompt", type=int, default=2048, metavar="TOKENS", help="prompt tokens per user (default "
                       "2048)")
    serve.add_argument("--generate", type=int, default=256, metavar="TOKENS", help="output tokens per user (default "
                       "256)")
    serve.add_argument("--batch", default="1,8,32,128", help="concurrent users, comma-separated (default 1,8,32,128)")
    serve.add_argument("--execution", default="eager", choices=EXECUTIONS, metavar="MODE", help=EXECUTION_HELP)
    serve.add_argument("--gpus", type=int, default=1, metavar="N", help="tensor parallel over N GPUs of the chip's "
                       "system (per-layer all-reduces; default 1)")
    serve.add_argument("--system", metavar="ID|FILE", help="with --gpus: the system and its network (default: the "
                       "chip's catalog system)")
    serve.add_argument("--top", type=int, default=0, metavar="N", help="also print the N slowest layers of the last "
                       "decode step at the largest batch")
    serve.add_argument("--plot", metavar="FILE.png", help="draw tokens/s per GPU against time per output token "
                       "(PNG or SVG)")
    serve.add_argument("--measure", action="store_true", help="also generate for real on this CPU (random "
                       "weights, the same served cache) and set the measured TTFT and decode steps beside the "
                       "prediction for --hardware local")
    serve.add_argument("--runs", type=int, default=3, help="with --measure: timed generations per batch, the median "
                       "is shown (default 3)")
    serve.add_argument("--no-cache", action="store_true", help="capture again instead of reading the prefill and "
                       "decode steps from the disk cache of captured steps (`roofline cache info`), and do not write "
                       "them there")
    serve.add_argument("--json", metavar="FILE", help="also write the results as JSON (- for stdout only)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .hardware import load_hardware
    from .output_paths import json_text, write_json
    from .plot_style import check_output_path, save_figure
    from .render import layer_table
    from .render_serving import serving_table, throughput_latency
    from .serving import serve
    from .serving_models import decoder_for
    from .step_cache import decoder_identity
    from .weight_formats import check_formats

    if (args.model is None) == (args.hf_config is None):
        raise RooflineError("give a decoder (a zoo name or FILE.py:FUNC) or --hf-config CONFIG, not both")
    if args.hf_class and not args.hf_config:
        raise RooflineError("--hf-class picks the class of an --hf-config model; add --hf-config or leave it out")
    batches = int_list(args.batch, "--batch")
    if args.plot:
        check_output_path(args.plot)
    if args.top < 0:
        raise RooflineError(f"--top must be 0 (no layer table) or a positive number of rows, got {args.top}")
    if not 1 <= args.gpus <= 1024:
        raise RooflineError(f"--gpus takes 1 to 1,024 GPUs for tensor parallel serving, got {args.gpus}")
    if args.system and args.gpus == 1:
        raise RooflineError("--system names the network of --gpus N; add --gpus or leave --system out")
    if args.measure:
        return _measure(args, batches)
    precision = PRECISIONS[args.precision]
    chips = [load_hardware(c.strip()) for c in args.hardware.split(",") if c.strip()]
    if not chips:
        raise RooflineError(f"--hardware {args.hardware!r} names no chip; give an id such as h100-sxm")
    for chip in chips:
        chip.matrix_peak(precision)
        check_formats(chip, args.weights, args.kv_cache)
    err = Console(stderr=True)
    with err.status("building the decoder…"):
        model, config, name = decoder_for(args.model, args.hf_config, args.hf_class)
    identity = None if args.no_cache else decoder_identity(args.model, args.hf_config, args.hf_class)
    results, shared_steps = [], {}  # the chips share the steps (serve's shared_steps)
    for chip in chips:
        network = _system(args, chip) if args.gpus > 1 else None
        with err.status(f"{name} on {chip.id}…") as status:
            results.append(serve(model, config, name, chip, precision, args.prompt, args.generate, batches,
                                 args.weights, args.kv_cache, args.execution, gpus=args.gpus, system=network,
                                 say=lambda line: status.update(f"{name} on {chip.id}: {line}"), identity=identity,
                                 shared_steps=shared_steps))
    data = [r.to_dict() for r in results]
    data = data[0] if len(data) == 1 else {"chips": data}
    if args.json != "-":
        out = output_console()
        for r in results:
            out.print(serving_table(r))
            if args.top and r.decode_report is not None:
                out.print(layer_table(r.decode_report, "layer", None, args.top))
    if args.json == "-":
        print(json_text(data))
    elif args.json:
        write_json(Path(args.json), data)
        err.print(f"wrote {args.json}")
    if args.plot:
        save_figure(throughput_latency(results), args.plot)
        err.print(f"wrote {args.plot}")
    too_big = [(r, b) for r in results for b in batches if not r.fits(b)]
    if too_big:
        r, b = too_big[0]
        raise RooflineError(f"batch {b} does not fit on {r.chip}: {r.memory_bytes(b) / 1e9:,.1f} GB of "
                            f"{r.capacity_bytes / 1e9:,.0f} GB (weights {r.weights_bytes / 1e9:,.1f} GB, KV cache "
                            f"{r.kv_bytes_per_sequence / 1e9:,.3f} GB per user); the largest batch that fits is "
                            f"{r.max_batch:,}" + ("" if r.max_batch else ": the weights alone do not fit: --weights "
                                                  "int4/int8, --gpus N, or a bigger chip"))
    return 0


def _measure(args, batches: list[int]) -> int:
    """`serve --measure`: real generation here beside the `local` prediction."""

    from .measure_serving import measure_generation
    from .output_paths import json_text, write_json

    if args.hardware != "local" or args.precision != "fp32" or (args.weights, args.kv_cache) != ("auto", "auto") \
            or args.gpus != 1 or args.execution != "eager" or args.plot:
        raise RooflineError("--measure generates in fp32 on this CPU against the calibrated chip: give --hardware "
                            "local --precision fp32 and leave --weights, --kv-cache, --gpus, --execution and --plot "
                            "out")
    err = Console(stderr=True)
    with err.status(f"generating with {args.model or args.hf_config} on this CPU…"):
        rows = measure_generation(args.model, batches, args.prompt, args.generate, args.runs, hf_config=args.hf_config)
    if args.json == "-":
        print(json_text(rows))
        return 0
    table = FitTable(title=f"{rows[0]['model']} on this CPU (fp32, eager, random weights): measured / predicted, "
                           f"ms; prompt {args.prompt}, generate {args.generate}, median of {args.runs}",
                     title_justify="left")
    for col in ("batch", "TTFT", "first token", "middle token", "last token", "mean per token", "TPOT error"):
        table.add_column(col, justify="right", priority=2 if col == "middle token" else 1 if "token" in col
                         and col != "mean per token" else 0)  # FitTable priorities: the per-position tokens first
    for r in rows:
        m, p = r["measured"], r["predicted"]
        cells = [f"{m['ttft_s'] * 1e3:,.1f} / {p['ttft_s'] * 1e3:,.1f}"]
        cells += [f"{a * 1e3:,.1f} / {b * 1e3:,.1f}" for a, b in zip(m["decode_s"], p["decode_s"])]
        cells.append(f"{m['time_per_token_s'] * 1e3:,.1f} / {p['time_per_token_s'] * 1e3:,.1f}")
        cells.append(f"{100 * (p['time_per_token_s'] / m['time_per_token_s'] - 1):+.0f}%")
        table.add_row(str(r["batch"]), *cells)
    output_console().print(table)
    if args.json:
        write_json(Path(args.json), rows)
        err.print(f"wrote {args.json}")
    return 0


def _system(args, chip):
    from .system import load_system, systems_for_chip

    if args.system:
        system = load_system(args.system)
        if system.chip != chip.id:
            raise RooflineError(f"--system {system.id} is built on {system.chip}, not {chip.id}")
        return system
    found = systems_for_chip(chip.id)
    if not found:
        raise RooflineError(f"no multi-GPU system in the catalog is built on {chip.id}; give --system FILE.yaml")
    return found[0]
