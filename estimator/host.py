"""Host profiles: what it costs the host CPU and the framework to issue work to a device.

Eager PyTorch runs every op from Python: the module call, autograd's bookkeeping, the aten
dispatcher and the kernel launch all happen on the host before the kernel reaches the device's
queue. Those costs belong to the host CPU and the framework, not to the accelerator, so they
live in their own YAML files (hardware/hosts/ID.yaml) that a chip YAML names with `host: ID`,
or inline as a mapping (what `roofline calibrate` writes for this machine). Units in the YAML
are microseconds; HostProfile holds seconds.

Keys (all required, each >= 0):
  op_us               issue one aten op that launches a kernel, grad mode off
  conv_op_us          extra per cuDNN convolution call (descriptors, heuristics, plan lookup); a
                      convolution backward makes two (input and weight gradients)
  matmul_op_us        extra per cuBLAS(Lt) matmul call (mm, addmm, bmm: heuristic and descriptor
                      lookup); optional in a mapping: missing, it is op_us x MATMUL_OP_RATIO (the
                      ratio measured on the lent H200's host) and the source says so
  view_us             an aten op that launches nothing (view, reshape, metadata)
  autograd_us         extra per forward op that records an autograd node (grad mode on)
  backward_op_us      per aten op the autograd engine issues in the backward
  autocast_us         extra per op dispatched through autocast
  module_call_us      one nn.Module __call__
  step_sync_us        the end-of-step synchronisation round trip (.item(), synchronize)
  optimizer_param_us  Python bookkeeping per parameter tensor in an optimizer step
  graph_launch_us     launching one CUDA-graph replay
  in_situ_forward     (optional, default 1) multiplier on the costs of forward ops for ops inside
  in_situ_backward    a real model, and on backward ops: measured by calibrate as a small real
                      model's step time over what the keys above predict for it

Example:
    >>> load_host("dgx-a100-epyc-7742").op_s
    9e-06
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from .errors import HardwareSpecError, did_you_mean

HOST_KEYS = ("op_us", "conv_op_us", "matmul_op_us", "view_us", "autograd_us", "backward_op_us", "autocast_us", "module_call_us",
             "step_sync_us", "optimizer_param_us", "graph_launch_us")
# Multipliers on the per-op costs above for ops inside a real model (cold caches, real argument
# handling, the model's own Python): forward ops and backward ops. Optional; missing, 1.0 (the
# hot-loop figures as they are). `roofline calibrate` measures them (estimator.host_probes).
IN_SITU_KEYS = ("in_situ_forward", "in_situ_backward")
DEFAULT_HOST = "generic-server"
# matmul_op_us / op_us where a host mapping lacks matmul_op_us: on the lent H200's host (torch
# 2.11) a 1x1 torch.mm took 22.1 us and torch.add 11.3 us per call (validation/h200/gpu_steps.jsonl)
MATMUL_OP_RATIO = 0.96


@dataclass(frozen=True)
class HostProfile:
    id: str
    name: str
    op_s: float
    conv_op_s: float
    matmul_op_s: float
    view_s: float
    autograd_s: float
    backward_op_s: float
    autocast_s: float
    module_call_s: float
    step_sync_s: float
    optimizer_param_s: float
    graph_launch_s: float
    in_situ_forward: float = 1.0
    in_situ_backward: float = 1.0
    source: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, **{k.removesuffix("_us") + "_s": getattr(self, k.removesuffix("_us") + "_s")
                                                      for k in HOST_KEYS},
                **{k: getattr(self, k) for k in IN_SITU_KEYS}, "source": list(self.source)}


def hosts_dir() -> Path:
    return Path(str(resources.files("roofline_hardware"))) / "hosts"


def host_ids() -> list[str]:
    return sorted(p.stem for p in hosts_dir().glob("*.yaml"))


def load_host(host_id: str) -> HostProfile:
    """A catalog host by id (a file in hardware/hosts/)."""
    path = hosts_dir() / f"{host_id}.yaml"
    if not path.is_file():
        raise HardwareSpecError(f"unknown host {host_id!r}{did_you_mean(host_id, host_ids())}; "
                                f"catalog hosts: {', '.join(host_ids())}")
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise HardwareSpecError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise HardwareSpecError(f"{path}: expected a mapping of host keys ({', '.join(HOST_KEYS)})")
    data = dict(data)
    if data.pop("id", host_id) != host_id:
        raise HardwareSpecError(f"{path}: key 'id' must equal the file name {host_id!r}")
    return parse_host(data, str(path), host_id)


def parse_host(data, where: str, host_id: str = "inline") -> HostProfile:
    """A host mapping (the keys above, `name`, `source`) checked into a HostProfile."""
    if not isinstance(data, dict):
        raise HardwareSpecError(f"{where}: key 'host' is {data!r}; expected a catalog host id "
                                f"({', '.join(host_ids())}) or a mapping of {', '.join(HOST_KEYS)}")
    allowed = (*HOST_KEYS, *IN_SITU_KEYS, "name", "source")
    for key in data:
        if key not in allowed:
            raise HardwareSpecError(f"{where}: unknown host key {key!r}{did_you_mean(str(key), list(allowed))}; "
                                    f"allowed: {', '.join(allowed)}")
    values = {}
    source = data.get("source", [])
    source = [source] if isinstance(source, str) else [str(s) for s in source or ()]
    if "matmul_op_us" not in data and isinstance(data.get("op_us"), (int, float)):
        data = {**data, "matmul_op_us": round(MATMUL_OP_RATIO * data["op_us"], 3)}
        source.append(f"matmul_op_us: not given; op_us x {MATMUL_OP_RATIO} (the ratio measured on the lent "
                      "H200's host), a default of estimator.host")
    for key in HOST_KEYS:
        if key not in data:
            raise HardwareSpecError(f"{where}: host key {key!r} is missing")
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise HardwareSpecError(f"{where}: host key {key!r} is {value!r}; expected a number of microseconds >= 0")
        values[key.removesuffix("_us") + "_s"] = float(value) * 1e-6
    for key in IN_SITU_KEYS:
        value = data.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise HardwareSpecError(f"{where}: host key {key!r} is {value!r}; expected a multiplier > 0")
        values[key] = float(value)
    return HostProfile(id=host_id, name=str(data.get("name", host_id)), source=tuple(source), **values)
