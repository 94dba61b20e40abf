"""Execution modes: how one captured step becomes kernels with host and device costs, scheduled.

  eager        what PyTorch does by default. Every aten op that launches a kernel costs the
               host an op dispatch (plus autograd's record in a training forward, plus autocast's
               check under amp, plus cuDNN's per-call work for each convolution GEMM); views
               cost a view dispatch; each nn.Module call costs a module call; every backward op costs the autograd engine's issue; the optimizer's step
               costs its per-parameter bookkeeping. Device: estimator.device_model per kernel.
  cuda-graphs  the whole step replayed as one CUDA graph: one graph launch on the host, the
               family's graph per-kernel floor on the device, no Python per op.
  compiled-graphs  torch.compile(mode="reduce-overhead"): the compiled kernels replayed as one
               CUDA graph (gpt-fast's decode loop): compiled's kernels, cuda-graphs' host and floors.
  compiled     torch.compile (default mode, no CUDA graphs): chains of elementwise, norm,
               reduction and copy ops fuse into one generated kernel each and eager attention
               becomes one fused attention kernel (estimator.fusion); matmuls and convolutions
               stay library kernels; the host launches each kernel from generated code (one op
               dispatch per kernel, no module, view, autograd or autocast work).
Autocast (amp-*) casts each fp32 weight to half before the matmul or convolution that reads it,
once per forward (its cache lives for one autocast region): one copy kernel per weight, reading
fp32 and writing half, issued from the host like any op (eager and cuda-graphs; the compiled
code still casts, as its own small kernels, charged the same). In training each weight's half
gradient is cast back to fp32 (autograd's backward of the cast), before the optimizer's update.
The optimizer's update runs as eager PyTorch's default foreach implementation in eager mode
(estimator.foreach_optimizer: several passes of multi-tensor kernels), and as the single fused
kernel the capture records under cuda-graphs and compiled (capturable, fused=True).
Sync points: the end of the step always; under amp-fp16 training also before the optimizer
(GradScaler reads its inf check back to the host before stepping). On a CPU (kind "cpu") the
schedule is serial and each op's host cost is the chip's measured per-op overhead, as before.

Each node of the step gets a NodeTime: its device time split into compute, memory and the
kernel floor, its host cost, and the wait it caused (device idle waiting for the host). Fused
kernels share their times among their members in proportion to the members' own bytes.

Example:
    >>> times, timeline = run_step(step, costs, load_hardware("v100-sxm2"), PRECISIONS["amp-fp16"], "eager")
    >>> timeline.host_bound_s / timeline.step_s  # share of the step the GPU waits for Python
"""
from __future__ import annotations

import dataclasses
import logging
from typing import NamedTuple

import numpy as np

from .capture import CapturedStep
from .costs import MATRIX_CLASSES, Cost, rule_for
from .device_model import TRANSPOSE_KERNEL, KernelShape, kernel_signature, kernel_time, layout_transpose_bytes
from .errors import RooflineError
from .foreach_optimizer import PASSES, launches
from .gpu_family import DEFAULT_FAMILY, Family, load_family
from .hardware import Hardware
from .host import DEFAULT_HOST, HostProfile, load_host
from .memory import placeholder_kinds
from .precision import Precision
from .roofline import NodeTime, node_time, step_costs
from .timeline import Timeline, schedule

EXECUTIONS = ("eager", "cuda-graphs", "compiled", "compiled-graphs")
EXECUTION_HELP = ("how the step runs: eager (PyTorch's default: Python issues every op), cuda-graphs (the step "
                  "replayed as one CUDA graph), compiled (torch.compile's fusion) or compiled-graphs (torch.compile "
                  "mode='reduce-overhead': fused kernels replayed as a graph); default eager")
FUSED = ("compiled", "compiled-graphs")  # torch.compile's fusion groups
IN_GRAPH = ("cuda-graphs", "compiled-graphs")  # replayed as one CUDA graph
DEFAULT_SM_COUNT = 100  # for an accelerator YAML without sm_count (an A100-sized chip)
log = logging.getLogger(__name__)


NO_HOST, CAST_HOST, OP_HOST, GRAPH_HOST = range(4)  # a kernel's host term besides its eager span
PLANS_KEPT = 8  # kernel plans kept per step (a cluster search makes one per way of sharding)


class PlannedKernel(NamedTuple):
    """One kernel as a plan is built: its member nodes; what times it, (node index, cost, fused,
    shard, in_graph); the nodes [from, to) whose eager host work it issues; its host term; and
    whether the host waits for the device before issuing it."""
    members: tuple[int, ...]
    timed: tuple[int, Cost, bool, int, bool]
    span: tuple[int, int] = (0, 0)
    host_term: int = NO_HOST
    sync_before: bool = False


class KernelPlan(NamedTuple):
    """A step's kernels under one precision, execution mode and sharding, with nothing of the chip
    in it, so that re-costing on another chip times each distinct kernel once and looks up the rest.

    Kernel k runs timed[timed_of[k]] = (node index, cost, fused, shard, in_graph): one call of
    device_model.kernel_time (of roofline.node_time on a CPU). Its host cost is the eager host costs
    of nodes host_from[k]:host_to[k] plus its host term (NO_HOST, CAST_HOST: an autocast cast,
    OP_HOST: one op dispatch, GRAPH_HOST: the CUDA graph's launch). It runs repeats[k] times per
    step, in `order`. Node share_node[j] owns the fraction share[j] of kernel share_kernel[j].

    Example: ResNet-50's batch-32 training step makes 776 kernels from 121 distinct timings."""
    timed: list[tuple[int, Cost, bool, int, bool]]
    timed_of: np.ndarray
    host_from: np.ndarray
    host_to: np.ndarray
    host_term: np.ndarray
    sync_before: list[bool]
    order: list[int]
    repeats: np.ndarray
    share_node: np.ndarray
    share_kernel: np.ndarray
    share: np.ndarray


def check_execution(execution: str, hardware: Hardware) -> str:
    if execution not in EXECUTIONS:
        raise RooflineError(f"unknown execution mode {execution!r}; expected one of {', '.join(EXECUTIONS)}")
    if execution in IN_GRAPH and hardware.kind == "cpu":
        raise RooflineError(f"--execution cuda-graphs needs a CUDA GPU; {hardware.id} is a CPU "
                            "(use eager or compiled)")
    return execution


def execution_defaults(hardware: Hardware) -> tuple[Family, HostProfile, int]:
    """The chip's family, host and SM count, with the documented defaults (DEFAULT_FAMILY,
    DEFAULT_HOST, DEFAULT_SM_COUNT) for what its YAML lacks, logged once per chip."""
    missing = [f"{key}: {value} (default)" for key, value, given in (
        ("family", DEFAULT_FAMILY, hardware.family), ("host", DEFAULT_HOST, hardware.host),
        ("sm_count", DEFAULT_SM_COUNT, hardware.sm_count)) if not given]
    if missing and hardware.kind != "cpu" and hardware.id not in _WARNED:
        _WARNED.add(hardware.id)
        log.warning("%s has no %s in its YAML; using defaults: %s", hardware.id,
                    ", ".join(m.split(":")[0] for m in missing), "; ".join(missing))
    return (load_family(hardware.family or DEFAULT_FAMILY), hardware.host or load_host(DEFAULT_HOST),
            hardware.sm_count or DEFAULT_SM_COUNT)


_WARNED: set[str] = set()


def run_step(step: CapturedStep, costs: tuple[Cost, ...], hardware: Hardware, precision: Precision,
             execution: str = "eager", shards: tuple[int, ...] | None = None) -> tuple[tuple[NodeTime, ...], Timeline]:
    """Per-node times and the step's timeline (module docstring). `shards[i]` (default all 1)
    divides node i's work among that many GPUs (tensor or pipeline parallel, sharded optimizer
    state: estimator.cluster): its FLOPs, bytes and GEMM size shrink, its launches and host work
    stay, as each GPU still runs every kernel on its part."""
    check_execution(execution, hardware)
    cpu = hardware.kind == "cpu"
    plan, costs = kernel_plan(step, costs, precision, execution, shards, cpu)
    if cpu:
        times = [node_time(cost, hardware, precision) for _, cost, _, _, _ in plan.timed]
        table = [(t.compute_s, t.memory_s, 0.0, t.roofline_s, t.overhead_s) for t in times]
        terms, spans, sync_s = (0.0,) * 4, 0.0, 0.0
    else:
        family, host, sm_count = execution_defaults(hardware)
        hardware = dataclasses.replace(hardware, sm_count=sm_count)
        signatures = kernel_signatures(step)
        times = [kernel_time(step.nodes[i], cost, hardware, precision, family, graph, fused, shard, signatures[i])
                 for i, cost, fused, shard, graph in plan.timed]
        table = [(t.compute_s, t.memory_s, t.floor_s, t.roofline_s, 0.0) for t in times]
        cast_host_s = (0.0 if execution in IN_GRAPH else host.op_s if execution != "eager" else
                       host.in_situ_forward * (host.op_s + host.autocast_s))
        terms = (0.0, cast_host_s, host.op_s, host.graph_launch_s)
        spans, sync_s = 0.0, host.step_sync_s
        if execution == "eager":  # summed as PyTorch issues them, in order (no prefix-sum rounding)
            pending = eager_host_costs(step, costs, host, precision)
            spans = np.array([sum(pending[a:b]) for a, b in zip(plan.host_from.tolist(), plan.host_to.tolist())])
    return _plan_times(step, plan, np.array(table).reshape(-1, 5), np.array(terms), spans, sync_s, serial=cpu)


def _plan_times(step, plan: KernelPlan, table, terms, spans, sync_s: float, serial: bool):
    """Per-node times and timeline of `plan`, given each timed entry's (compute, memory, floor,
    roofline, host) seconds, the host terms' seconds and each kernel's eager host span (or 0.0)."""
    compute, memory, floor, roofline, own_host = table[plan.timed_of].T
    device = np.maximum(compute, memory) + floor
    host = own_host + spans + terms[plan.host_term]
    timeline = schedule(host.tolist(), device.tolist(), plan.sync_before, sync_s, serial=serial, order=plan.order)
    wait = np.array(timeline.wait_s) / np.maximum(plan.repeats, 1)
    n = len(step.nodes)
    parts = [np.bincount(plan.share_node, weights=column[plan.share_kernel] * plan.share, minlength=n)
             for column in (compute, memory, floor, roofline, host, wait, device)]
    return tuple(map(NodeTime._make, zip(*(part.tolist() for part in parts)))), timeline


def kernel_plan(step: CapturedStep, costs: tuple[Cost, ...], precision: Precision, execution: str,
                shards: tuple[int, ...] | None, cpu: bool) -> tuple[KernelPlan, tuple[Cost, ...]]:
    """The step's KernelPlan and its costs split by `shards`; kept in step.extra (the last
    PLANS_KEPT, for these very `costs`, held so that their id stays theirs) so that another chip
    re-uses it. The key has `accumulate`, as a step re-made with another one shares its extra."""
    plans = step.extra.setdefault("kernel_plans", {})
    key = (id(costs), precision.name, execution, shards, cpu, step.accumulate)
    if key in plans and plans[key][0] is costs:
        return plans[key][1:]
    shards = shards or (1,) * len(costs)
    split = tuple(c if n == 1 else shard_cost(c, n) for c, n in zip(costs, shards))
    groups = _groups(step, split, precision, execution)
    entries = ([PlannedKernel(members, (members[0], cost, len(members) > 1, 1, False)) for members, cost in groups]
               if cpu else _accelerator_kernels(step, split, precision, execution, groups,
                                                                                shards))
    plan = _make_plan(step, split, entries, by_cost=cpu)
    if len(plans) >= PLANS_KEPT:
        del plans[next(iter(plans))]
    plans[key] = (costs, plan, split)
    return plan, split


def _make_plan(step, costs, entries: list[PlannedKernel], by_cost: bool) -> KernelPlan:
    """KernelPlan of `entries`; timed entries are shared by equal kernel signature and arguments
    (by cost alone when `by_cost`)."""
    signatures = kernel_signatures(step)
    timed, index, timed_of = [], {}, []
    for entry in entries:
        key = entry.timed[1] if by_cost else _timing_key(signatures, entry.timed)
        if key not in index:
            index[key] = len(timed)
            timed.append(entry.timed)
        timed_of.append(index[key])
    update = [step.nodes[e.members[0]].phase == "optimizer" for e in entries]
    order = [k for k, u in enumerate(update) if not u] * step.accumulate + [k for k, u in enumerate(update) if u]
    share_node, share_kernel, share = [], [], []
    for k, members in enumerate(e.members for e in entries):
        weights = [costs[i].bytes + costs[i].flops * 1e-3 for i in members]  # FLOPs only split ties
        total = sum(weights)
        for i, w in zip(members, weights):
            share_node.append(i)
            share_kernel.append(k)
            share.append(1.0 if len(members) == 1 else w / total if total else 1 / len(members))
    def ints(values) -> np.ndarray:
        return np.array(list(values), dtype=np.intp)

    return KernelPlan(timed, ints(timed_of), ints(e.span[0] for e in entries), ints(e.span[1] for e in entries),
                      ints(e.host_term for e in entries), [e.sync_before for e in entries], order,
                      np.bincount(ints(order), minlength=len(entries)), ints(share_node), ints(share_kernel),
                      np.array(share))


def _groups(step, costs, precision, execution) -> list[tuple[tuple[int, ...], Cost]]:
    """(members, cost) of each kernel: every non-free node alone, or the compiler's fusion groups."""
    if execution in FUSED:
        from .fusion import fusion_groups  # networkx loads only when a step is compiled

        # a fused kernel's bytes come from its boundary tensors at the precision: what the given
        # costs take off their members (a GPU's shard, quantised weights) comes off it too
        base = step_costs(step, precision)

        def less(g, field: str) -> int:
            return max(0, getattr(g, field) - sum(getattr(base[i], field) - getattr(costs[i], field)
                                                  for i in g.members if len(g.members) > 1))

        return [(g.members, Cost(less(g, "flops"), less(g, "bytes_read"), less(g, "bytes_written"),
                                 g.op_class if g.op_class != "fused" else "elementwise", g.model_flops,
                                 costs[g.members[0]].kernel if len(g.members) == 1 else ""))
                for g in fusion_groups(step, costs, precision)]
    return [((i,), c) for i, c in enumerate(costs) if c.op_class != "free"]


def shard_cost(cost: Cost, n: int) -> Cost:
    """One GPU's part of `cost` split n ways (rounded up)."""
    def part(v: int) -> int:
        return -(-v // n)
    return Cost(part(cost.flops), part(cost.bytes_read), part(cost.bytes_written), cost.op_class,
                None if cost.model_flops is None else part(cost.model_flops), cost.kernel)


def _timing_key(signatures: list, timed: tuple) -> tuple:
    """What makes two timed entries (node index, cost, fused, shard, in_graph) take equal times."""
    return (signatures[timed[0]], *timed[1:])


def _accelerator_kernels(step, costs, precision, execution, groups, shards) -> list[PlannedKernel]:
    """The kernels of a GPU step: each group's kernel, with autocast's casts,
    cuDNN's layout copies and the eager optimizer's foreach passes around it."""
    in_graph = execution in IN_GRAPH
    grad_scaler = precision.name == "amp-fp16" and step.mode == "train" and not in_graph  # a graph cannot sync
    casts = amp_weight_casts(step) if precision.amp else {}
    cast_term = NO_HOST if in_graph else CAST_HOST
    # in training, each half weight's gradient is cast back to the fp32 master gradient: charged
    # before the optimizer's update (or the step's last kernel when it has none)
    back = [m for metas in casts.values() for m in metas] if step.mode == "train" else []
    grad_owner = next((i for i, n in enumerate(step.nodes) if n.phase == "optimizer"), None)
    if grad_owner is None:
        grad_owner = max((i for i, c in enumerate(costs) if c.op_class != "free"), default=0)
    kernels, issued_to, first_update = [], 0, True

    def add_casts(owner: int, metas, read_bytes: int, write_bytes: int) -> None:
        for meta in metas:
            elements = -(-meta.distinct // shards[owner])
            cast = Cost(0, read_bytes * elements, write_bytes * elements, "memory")
            kernels.append(PlannedKernel((owner,), (owner, cast, False, 1, in_graph), host_term=cast_term))

    for members, cost in groups:
        first = members[0]
        node = step.nodes[first]
        # autocast's weight copies, just before their first reader; the gradients' casts back
        add_casts(first, casts.get(first, ()), 4, precision.matrix_bytes)
        if back and first == grad_owner:
            add_casts(grad_owner, back, precision.matrix_bytes, 4)
        # eager: the host work of this op and of the views and module calls since the last kernel
        span = (issued_to, max(issued_to, members[-1] + 1)) if execution == "eager" else (0, 0)
        term = NO_HOST if in_graph or execution == "eager" else OP_HOST
        issued_to = max(issued_to, members[-1] + 1)
        sync = grad_scaler and node.phase == "optimizer" and first_update
        first_update = first_update and not (node.phase == "optimizer")
        if execution == "eager" and node.phase == "optimizer" and step.optimizer in PASSES:
            kernels.extend(_foreach_kernels(first, node, step.optimizer, precision, span, sync, shards[first]))
            continue
        kernels.append(PlannedKernel(members, (first, cost, len(members) > 1, shards[first], in_graph), span, term, sync))
        if len(members) > 1:
            continue
        # cuDNN's NCHW <-> NHWC copies around a 16-bit convolution: launched inside the library call
        transposed = layout_transpose_bytes(node, cost, precision)
        if transposed:
            copy = Cost(0, transposed // 2, transposed // 2, "memory", kernel=TRANSPOSE_KERNEL)
            kernels.append(PlannedKernel(members, (first, copy, False, 1, in_graph)))
        # autocast runs an fp32-list op (layer norm, softmax, a loss) on an fp32 copy of its half
        # input, and the next matrix op casts its fp32 output back: two casts (the same in backward)
        if execution not in FUSED:
            for elements, read, write in autocast_activation_casts(node, cost, precision):
                elements = -(-elements // shards[first])
                cast = Cost(0, elements * read, elements * write, "memory")
                kernels.append(PlannedKernel(members, (first, cast, False, 1, in_graph), host_term=cast_term))
    if in_graph and kernels:
        kernels[0] = kernels[0]._replace(span=(0, 0), host_term=GRAPH_HOST)
    return kernels


def _foreach_kernels(index: int, node, optimizer: str, precision, span: tuple[int, int], sync: bool,
                     shard: int) -> list[PlannedKernel]:
    """The eager default update (estimator.foreach_optimizer): each pass's multi-tensor launches, the
    first pass carrying the step's bookkeeping (the eager host `span`), every later pass one more op
    on the host. `shard`: this GPU updates 1/shard of the elements (as many tensors, each a part)."""
    params = node.args[0]
    tensors, elements = len(params), -(-sum(p.numel for p in params) // shard)
    size = precision.float_bytes("optimizer")
    kernels = []
    for p, one in enumerate(PASSES[optimizer]):
        n = launches(tensors, elements, one.depth)
        per_launch = Cost(elements // n, one.read * elements * size // n, one.written * elements * size // n,
                          "optimizer")
        for launch in range(n):
            issue = ((span, NO_HOST) if p == 0 else ((0, 0), OP_HOST)) if launch == 0 else ((0, 0), NO_HOST)
            kernels.append(PlannedKernel((index,), (index, per_launch, False, 1, False), *issue,
                                         sync and p == 0 and launch == 0))
    return kernels


def kernel_signatures(step: CapturedStep) -> list[KernelShape]:
    """device_model.kernel_signature of every node; chip-independent, so computed once per step
    (cached in step.extra)."""
    if "kernel_signatures" not in step.extra:
        step.extra["kernel_signatures"] = [kernel_signature(node) for node in step.nodes]
    return step.extra["kernel_signatures"]


def autocast_activation_casts(node, cost: Cost, precision: Precision) -> list[tuple[int, int, int]]:
    """(elements, read bytes each, written bytes each) of the activation casts autocast adds around
    an op it runs in fp32 (precision.float_bytes gives 4 under amp: layer and group norms,
    softmax, losses; not batch norm): its half input to fp32, its fp32 output (when more than a
    scalar) back to half for the next matrix op. [] outside amp and for other ops."""
    if not precision.amp or cost.op_class not in ("norm", "softmax", "loss"):
        return []
    if precision.float_bytes(cost.op_class, node.op.overloadpacket.__name__) != 4:
        return []
    half = precision.other_bytes
    floats_in = [t for t in node.inputs if t.is_float]
    floats_out = [t for t in node.outputs if t.is_float]
    casts = []
    if floats_in:
        casts.append((max(t.numel for t in floats_in), half, 4))
    if floats_out and max(t.numel for t in floats_out) > 1:
        casts.append((max(t.numel for t in floats_out), 4, half))
    return casts


def amp_weight_casts(step: CapturedStep) -> dict[int, list]:
    """Node index -> TensorMeta of the parameters autocast casts to half just before that node: each
    parameter read (through views) by a forward matmul, convolution or attention, at its first reader.
    Computed once per step (cached in step.extra)."""
    if "amp_weight_casts" not in step.extra:
        step.extra["amp_weight_casts"] = _find_weight_casts(step)
    return step.extra["amp_weight_casts"]


def _find_weight_casts(step: CapturedStep) -> dict[int, list]:
    casts: dict[int, list] = {}
    seen: set = set()
    for index, sources in weight_reads(step).items():
        if step.nodes[index].phase not in ("forward", "loss"):
            continue
        for source in sources:
            if source not in seen:
                seen.add(source)
                casts.setdefault(index, []).append(source.meta["tensor_meta"])
    return casts


def weight_reads(step: CapturedStep) -> dict[int, list]:
    """Node index -> the floating parameter placeholders (fx nodes) it reads, through views, as a
    matmul, convolution or attention operand, in graph order. Cached in step.extra."""
    if "weight_reads" not in step.extra:
        graph_nodes = list(step.graph.nodes)
        kinds = placeholder_kinds(step, graph_nodes)
        index = {node: i for i, node in enumerate(n for n in graph_nodes if "roofline" in n.meta)}
        found: dict[int, list] = {}
        for node in graph_nodes:
            op = node.meta.get("roofline")
            rule = rule_for(op) if op is not None else None
            if rule is None or rule.op_class not in MATRIX_CLASSES:
                continue
            for arg in node.all_input_nodes:
                source = _through_views(arg)
                if kinds.get(source) == "parameters" and source.meta["tensor_meta"].is_float:
                    found.setdefault(index[node], []).append(source)
        step.extra["weight_reads"] = found
    return step.extra["weight_reads"]


def _through_views(node):
    """The node a chain of free ops (views, transposes) starts from."""
    while node.op == "call_function" and "roofline" in node.meta:
        rule = rule_for(node.meta["roofline"])
        if rule is None or rule.op_class != "free" or not node.all_input_nodes:
            break
        node = node.all_input_nodes[0]
    return node


def eager_host_costs(step: CapturedStep, costs, host: HostProfile, precision: Precision) -> list[float]:
    """Host seconds per node in eager mode: dispatch (+ autograd record, + autocast) per op, a view
    dispatch per free op, the module calls entered at the node, the optimizer's bookkeeping; forward
    and backward costs times the host's in-situ multipliers (ops inside a real model). Kept in
    step.extra per host and precision (a node's class does not change with its shard)."""
    key = ("eager_host_costs", host, precision.name)
    if key not in step.extra:
        step.extra[key] = _eager_host_costs(step, costs, host, precision)
    return step.extra[key]


def _eager_host_costs(step: CapturedStep, costs, host: HostProfile, precision: Precision) -> list[float]:
    out = []
    train = step.mode == "train"
    forward, backward = host.in_situ_forward, host.in_situ_backward  # ops inside a real model
    for node, cost, entered, signature in zip(step.nodes, costs, modules_entered(step), kernel_signatures(step)):
        library = (host.conv_op_s * len(signature.dims) if cost.op_class == "conv" else
                   host.matmul_op_s * len(signature.dims) if cost.op_class == "matmul" else 0.0)
        if node.phase == "backward":
            out.append(backward * (host.view_s if cost.op_class == "free" else host.backward_op_s + library))
            continue
        if node.phase == "optimizer":
            params = len(node.args[0]) if node.args and isinstance(node.args[0], (list, tuple)) else 1
            out.append(host.op_s + host.optimizer_param_s * params)
            continue
        if cost.op_class == "free":
            out.append(forward * (host.view_s + entered * host.module_call_s))
            continue
        out.append(forward * (host.op_s + library + entered * host.module_call_s + (host.autograd_s if train else 0.0)
                              + (host.autocast_s if precision.amp else 0.0)))
    return out


def modules_entered(step: CapturedStep) -> list[int]:
    """Per node, how many nn.Module calls start at it: the modules on its path (the model itself
    included) that the previous forward node was not already inside; 0 outside the forward and loss.

    Example: nodes owned by 'layer1.0.conv1' then 'layer1.0.bn1' enter 4 modules, then 1."""
    if "modules_entered" not in step.extra:
        step.extra["modules_entered"] = _modules_entered(step)
    return step.extra["modules_entered"]


def _modules_entered(step: CapturedStep) -> list[int]:
    out, previous = [], []
    for node in step.nodes:
        if node.phase not in ("forward", "loss"):
            out.append(0)
            continue
        parts = node.module_path.split(".") if node.module_path else []
        chain = [""] + [".".join(parts[:i + 1]) for i in range(len(parts))]
        common = next((i for i, (a, b) in enumerate(zip(chain, previous)) if a != b), min(len(chain), len(previous)))
        out.append(len(chain) - common)
        previous = chain
    return out
