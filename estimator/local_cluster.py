"""The prediction for a "cluster" of processes on this machine, to set beside estimator.measure_cluster.

N processes share the calibrated `local` chip: each runs with 1/N of the threads the chip was
calibrated with (estimator.distributed_launch gives each max(1, cpus // N)), so each sees that
share of its compute and memory roofs, while a kernel's fixed per-op overhead stays what it
was. They talk over the loopback network that `roofline calibrate --network` measured (the
`local` system). The step is then predicted like any cluster's (estimator.cluster): data
parallel over N, gradients all-reduced in buckets (ddp) or parameters gathered and gradients
reduce-scattered per block (fsdp), on the CPU's serial schedule.

Example:
    >>> result = predict_local("resnet18", nproc=2, parallel="ddp", batch=2, image=32)
    >>> result.step_time_s
"""
from __future__ import annotations

import dataclasses

import torch

from .cluster import ClusterResult, predict_cluster
from .distributed_launch import threads_per_process
from .hardware import Hardware, load_hardware
from .parallel_layout import parse_layout
from .precision import get_precision
from .system import System, load_system


def process_share(hardware: Hardware, nproc: int, calibrated_threads: int | None = None) -> Hardware:
    """`hardware` as one of `nproc` processes sees it: its roofs times its share of the threads."""
    threads = calibrated_threads or torch.get_num_threads()
    share = min(1.0, threads_per_process(nproc) / max(1, threads))
    return dataclasses.replace(
        hardware, matrix_flops_per_s={k: v * share for k, v in hardware.matrix_flops_per_s.items()},
        vector_flops_per_s={k: v * share for k, v in hardware.vector_flops_per_s.items()},
        memory_bytes_per_s=hardware.memory_bytes_per_s * share)


def predict_local(model: str, nproc: int, parallel: str, batch: int, *, seq: int | None = None,
                  image: int | None = None, hardware: Hardware | None = None,
                  system: System | None = None) -> ClusterResult:
    """The predicted training step of `model` on `nproc` local processes (module doc); the step
    is what estimator.measure_cluster times: fp32, the default loss, AdamW."""
    import roofline_zoo

    from .capture import capture

    hardware = process_share(hardware or load_hardware("local"), nproc)
    system = system or load_system("local")
    meta_model, meta_inputs = roofline_zoo.get(model).build(batch=batch, image=image, seq=seq, device="meta")
    step = capture(meta_model, meta_inputs, mode="train", model_name=model, optimizer="adamw")
    return predict_cluster(step, system, hardware, get_precision("fp32"), parse_layout(parallel, nproc),
                           gpus_per_node=nproc)
