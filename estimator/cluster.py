"""A training step on a cluster: the captured single-GPU step split by a layout, its communication
placed where it runs, and the step time as the critical path of the schedule.

From the captured step (one micro-batch of `step.batch` samples per GPU, forward, loss,
backward, optimizer), for one GPU of each pipeline stage:

  * units: the model's repeated blocks (estimator.model_structure), plus "embed" (what runs
    before the first block) and "head" (after the last: final norm, output layer, loss); a
    unit is FSDP's wrapping unit and the grain of pipeline stages and gradient readiness;
  * each node's share of work (execution.run_step's `shards`): tensor parallel splits the
    nodes of a block's children that hold matmuls (attention, MLP), and the matmuls,
    embeddings and loss outside blocks (vocabulary-parallel); with sequence parallel every
    node; a GPU's optimizer updates 1/(tp x pp) of the parameters, 1/dp of that when the
    optimizer state is sharded (zero1-3, fsdp). Kernel launches and host work do not shrink;
  * tensor-parallel collectives (blocking, on the critical path): after each matmul-holding
    child of a block whose output is the model width (Megatron's row-parallel layers:
    attention and MLP out), an all-reduce of its output in the forward and of its input
    gradient in the backward (with sp: a reduce-scatter and an all-gather, the same bytes);
    the vocabulary-parallel embedding's output all-reduce; expert parallel: two all-to-alls of
    the routed tokens per MoE layer each way;
  * pipeline: the blocks split into pp equal stages, 1F1B over the micro-batches
    (`step.accumulate`): stage s runs pp - s - 1 forwards, then one forward and one backward
    in turn; activations pass between stages by send/recv;
  * data parallel, on a communication stream of its own: ddp all-reduces the gradients in
    buckets of 25 MB (PyTorch DDP's bucket_cap_mb) during the last micro-batch's backward
    (no_sync before), each bucket launched when its gradients are ready (a unit's gradients
    become ready evenly over its backward); zero1 the same, then the updated parameters
    all-gathered after the update; zero2 reduce-scatters the buckets instead; fsdp / zero3
    all-gather each unit's parameters before its forward and again before its backward (at
    most two units ahead: FSDP's rate limiter and backward prefetch) and reduce-scatter its
    gradients after its backward, every micro-batch; distopt reduce-scatters the buckets and
    all-gathers each unit's updated parameters at the start of the step, the first micro-batch's
    forward of the unit waiting for it (the steady state of Megatron's overlapped param gather).
    The optimizer waits for all of it.

On a CPU (processes with gloo) communication runs on the cores that compute: one stream.
Gradients are reduced at the master element size (fp32 under amp-*), parameters gathered at the
matrix element size. Every stage's schedule sits in one graph (estimator.cluster_schedule);
the step is its critical path, and communication exposed = that minus the same graph with
communication free.

Model FLOPs (MFU) are the captured forward and backward FLOPs of the whole model, causal
attention's masked half left out, no recompute, per sample x samples per step, over step time x
GPUs x the dense matrix peak; HFU counts the FLOPs executed (recompute included).

Example:
    >>> result = predict_cluster(step, load_system("dgx-h100"), PRECISIONS["amp-bf16"],
    ...                          parse_layout("tp=8,dp=8", 64), gpus_per_node=8)
    >>> result.step_time_s, result.mfu
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from .capture import CapturedStep
from .cluster_memory import cluster_memory
from .cluster_schedule import Schedule
from .collectives import collective_s
from .costs import MATRIX_CLASSES
from .errors import LayoutError
from .execution import run_step
from .hardware import Hardware
from .model_structure import ModelStructure
from .parallel_layout import Layout, group
from .precision import Precision
from .roofline import step_costs
from .system import System

BUCKET_BYTES = 25 * 2**20  # torch.nn.parallel.DistributedDataParallel's bucket_cap_mb default
FSDP_UNITS_AHEAD = 2  # FSDP's limit_all_gathers: at most two units' parameters gathered ahead
SHARDED_OUTSIDE_BLOCKS = ("matmul", "embedding", "loss")  # vocabulary-parallel embedding, head, loss


@dataclass
class Unit:
    """One unit's per-micro-batch work on one GPU (seconds) and the parameters it holds (names in
    JSON: forward_s, backward_s, tp_forward_s, ...)."""

    name: str
    forward_s: float = 0.0
    backward_s: float = 0.0
    tp_forward_s: float = 0.0  # tensor-parallel collectives, blocking
    tp_backward_s: float = 0.0
    ep_forward_s: float = 0.0  # expert-parallel all-to-alls, blocking
    ep_backward_s: float = 0.0
    trainable_elements: int = 0  # on this GPU (after tp and ep splits, before dp sharding)


@dataclass(frozen=True)
class ClusterResult:
    gpus: int
    gpus_per_node: int
    layout: Layout
    system: str
    chip: str
    precision: str
    micro_batch: int  # samples per micro-batch per GPU
    micro_batches: int  # per step (gradient accumulation / pipeline micro-batches)
    tokens_per_sample: int | None
    step_time_s: float
    compute_s: float  # the step with communication free (critical path of compute alone)
    communication_s: float  # communication time per GPU (the busiest stage), exposed or not
    communication_exposed_s: float
    collectives_s: dict[str, float]  # per kind: tp, ep, pp, dp
    model_flops_per_step: float
    executed_flops_per_step: float
    peak_flops_per_s: float
    memory: dict = field(default_factory=dict)  # estimator.cluster_memory breakdown, bytes per GPU
    critical_path: tuple[str, ...] = ()
    recompute: bool = False
    units: tuple[Unit, ...] = ()  # per unit and micro-batch, on one GPU of its stage

    @property
    def samples_per_step(self) -> int:
        return self.micro_batch * self.micro_batches * self.layout.dp

    @property
    def samples_per_s(self) -> float:
        return self.samples_per_step / self.step_time_s

    @property
    def tokens_per_s(self) -> float | None:
        return self.samples_per_s * self.tokens_per_sample if self.tokens_per_sample else None

    @property
    def mfu(self) -> float:
        return self.model_flops_per_step / (self.step_time_s * self.gpus * self.peak_flops_per_s)

    @property
    def hfu(self) -> float:
        return self.executed_flops_per_step / (self.step_time_s * self.gpus * self.peak_flops_per_s)

    @property
    def memory_per_gpu_bytes(self) -> int:
        return self.memory.get("peak_bytes", 0)

    @property
    def fits(self) -> bool:
        return self.memory.get("fits", True)

    def to_dict(self) -> dict:
        tokens = self.tokens_per_s
        return {"gpus": self.gpus, "gpus_per_node": self.gpus_per_node, "nodes": -(-self.gpus // self.gpus_per_node),
                "layout": self.layout.name, "parallel": self.layout.to_dict(), "system": self.system,
                "chip": self.chip, "precision": self.precision, "micro_batch": self.micro_batch,
                "micro_batches": self.micro_batches, "global_batch": self.samples_per_step,
                "step_time_s": self.step_time_s, "compute_s": self.compute_s,
                "samples_per_s": self.samples_per_s, "tokens_per_s": tokens,
                "tokens_per_s_per_gpu": tokens / self.gpus if tokens else None,
                "mfu": self.mfu, "hfu": self.hfu,
                "mfu_convention": "captured forward+backward FLOPs of the model (causal attention's masked half "
                                  "not counted, no recompute) / (step time x GPUs x dense peak)",
                "communication_s": self.communication_s, "communication_exposed_s": self.communication_exposed_s,
                "communication_hidden_s": max(0.0, self.communication_s - self.communication_exposed_s),
                "collectives_s": self.collectives_s, "memory_per_gpu_bytes": self.memory_per_gpu_bytes,
                "fits": self.fits, "recompute": self.recompute, "memory": self.memory,
                "critical_path": list(self.critical_path),
                "per_unit": [dataclasses.asdict(u) for u in self.units]}

    def summary(self) -> dict:
        """The step's scalars of to_dict (collectives flattened to `collectives_<kind>_s`)."""
        flat = {k: v for k, v in self.to_dict().items() if not isinstance(v, (dict, list)) and k != "mfu_convention"}
        return flat | {f"collectives_{kind}_s": s for kind, s in self.collectives_s.items()}

    def to_pandas(self, summary: bool = False):
        """One row per unit and micro-batch on one GPU (seconds, elements), or with `summary` the
        one-row summary(); raw numbers, units in the column names."""
        from .notebook_display import dataframe
        return dataframe([self.summary()] if summary else [dataclasses.asdict(u) for u in self.units])

    def _repr_html_(self) -> str:
        from .notebook_display import html_fields, html_table
        title = f"{self.gpus} x {self.chip} ({self.system}), {self.layout.name}, {self.precision}"
        return (html_fields(self.summary(), title)
                + html_table([dataclasses.asdict(u) for u in self.units], "per unit and micro-batch, one GPU"))


def check_layout(layout: Layout, structure: ModelStructure, hidden: int | None, gpus_per_node: int) -> None:
    """Refuse a layout the model cannot take: one LayoutError naming the value and the fix."""
    blocks = len(structure.blocks)
    if layout.gpus > gpus_per_node and layout.gpus % gpus_per_node:
        raise LayoutError(f"--gpus {layout.gpus} is not a whole number of nodes of {gpus_per_node} GPUs; give a "
                          f"multiple of {gpus_per_node} (or --gpus-per-node)")
    if (layout.pp > 1 or layout.data in ("fsdp", "zero3")) and not blocks:
        raise LayoutError(f"{layout.name}: found no repeated blocks (an nn.ModuleList or nn.Sequential of layers of "
                          "one class) to split into stages or shard units")
    if layout.pp > 1 and blocks % layout.pp:
        raise LayoutError(f"pp={layout.pp} does not divide the model's {blocks} blocks; pick pp from "
                          f"{', '.join(str(d) for d in divisors(blocks) if d > 1)}")
    if layout.tp > 1:
        if structure.heads and structure.heads % layout.tp:
            raise LayoutError(f"tp={layout.tp} does not divide the model's {structure.heads} attention heads; pick tp "
                              f"from {', '.join(str(d) for d in divisors(structure.heads) if d > 1)}")
        if hidden and hidden % layout.tp:
            raise LayoutError(f"tp={layout.tp} does not divide the model's hidden size {hidden}; pick tp dividing it")
    if layout.ep > 1:
        if not structure.experts:
            raise LayoutError(f"ep={layout.ep}: the model has no mixture-of-experts layers (no `experts` module); "
                              "drop ep")
        if structure.experts % layout.ep:
            raise LayoutError(f"ep={layout.ep} does not divide the model's {structure.experts} experts; pick ep "
                              f"from {', '.join(str(d) for d in divisors(structure.experts) if d > 1)}")


def divisors(n: int) -> list[int]:
    """1 .. n's divisors, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def model_width(step: CapturedStep, structure: ModelStructure) -> int | None:
    """The hidden size: the reduction dimension of the first block's first matmul."""
    first = structure.blocks[0].path if structure.blocks else None
    for node in step.nodes:
        if node.phase != "forward" or node.op.overloadpacket.__name__ not in ("mm", "addmm", "bmm", "linear"):
            continue
        if first is None or _in(node.module_path, first):
            return int(node.inputs[0].shape[-1] if node.op.overloadpacket.__name__ != "addmm" else
                       node.inputs[1].shape[-1])
    return None


def _in(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def predict_cluster(step: CapturedStep, system: System, hardware: Hardware, precision: Precision, layout: Layout,
                    gpus_per_node: int | None = None, execution: str = "eager") -> ClusterResult:
    """The step on `layout.gpus` GPUs of `system` (module doc)."""
    if step.mode != "train":
        raise LayoutError("a cluster layout splits a training step; add --train")
    gpus_per_node = gpus_per_node or system.gpus_per_node
    structure: ModelStructure = step.extra["structure"]
    hidden = model_width(step, structure)
    check_layout(layout, structure, hidden, gpus_per_node)
    plan = _Plan(step, structure, layout, precision, hidden)
    costs = plan.costs
    memory = cluster_memory(step, precision, layout, structure, hardware.memory_capacity_bytes,
                            plan.replicated_share())
    shards = plan.shards()
    chip = (hardware.id, hardware.memory_bytes_per_s, tuple(sorted(hardware.matrix_flops_per_s.items())))
    # layouts that split alike share them; a step re-made with another accumulate shares its extra
    key = ("cluster_times", chip, precision.name, execution, shards, step.accumulate)
    if key not in step.extra:
        step.extra[key] = run_step(step, costs, hardware, precision, execution, shards)
    times, timeline = step.extra[key]
    units = plan.units(times, system, gpus_per_node)
    optimizer_s = sum(t.total_s for n, t in zip(step.nodes, times) if n.phase == "optimizer") + timeline.sync_s
    schedule, comm = _schedule(units, optimizer_s, plan, system, gpus_per_node, step.accumulate,
                               serial=hardware.kind == "cpu")
    step_s = schedule.finish_s()
    compute_s = schedule.finish_s(comm_free=True)
    per_micro = [(c.useful_flops, c.flops) for n, c in zip(step.nodes, costs) if n.phase != "optimizer"]
    samples = step.accumulate * layout.dp
    return ClusterResult(
        gpus=layout.gpus, gpus_per_node=gpus_per_node, layout=layout, system=system.id, chip=hardware.id,
        precision=precision.name, micro_batch=step.batch, micro_batches=step.accumulate,
        tokens_per_sample=step.tokens_per_sample, step_time_s=step_s, compute_s=compute_s,
        communication_s=sum(comm.values()),
        communication_exposed_s=max(0.0, step_s - compute_s), collectives_s=comm,
        model_flops_per_step=samples * sum(f for f, _ in per_micro), executed_flops_per_step=samples * sum(
            f for _, f in per_micro), peak_flops_per_s=hardware.matrix_peak(precision), memory=memory,
        critical_path=tuple(schedule.critical_path()[-12:]), recompute=step.recompute, units=tuple(units))


def layout_memory(step: CapturedStep, precision: Precision, layout: Layout, capacity_bytes: int) -> dict:
    """Memory per GPU of `step` under `layout` (estimator.cluster_memory), without timing it."""
    structure: ModelStructure = step.extra["structure"]
    plan = _Plan(step, structure, layout, precision, model_width(step, structure))
    return cluster_memory(step, precision, layout, structure, capacity_bytes,
                          plan.replicated_share())


def tensor_parallel_forward(step: CapturedStep, precision: Precision, tp: int, system: System,
                            gpus_per_node: int) -> tuple[tuple[int, ...], float]:
    """(each node's shard, seconds of the blocking all-reduces) of an inference forward split over
    `tp` GPUs as Megatron splits it (module doc): what tensor-parallel serving runs per step."""
    structure: ModelStructure = step.extra["structure"]
    layout = Layout(dp=1, tp=tp)
    hidden = model_width(step, structure)
    check_layout(layout, structure, hidden, gpus_per_node)
    plan = _Plan(step, structure, layout, precision, hidden)
    one = group(tp, 1, gpus_per_node)
    return plan.shards(), sum(collective_s("all_reduce", nbytes, one, system) for nbytes in plan.tp_points.values())


class _Plan:
    """Which unit and which share of work each node of the step is (module doc)."""

    def __init__(self, step: CapturedStep, structure: ModelStructure, layout: Layout, precision: Precision,
                 hidden: int | None):
        self.step, self.structure, self.layout, self.precision, self.hidden = step, structure, layout, precision, hidden
        self.costs = step_costs(step, precision)
        self.block_paths = [b.path for b in structure.blocks]
        self._index = {p: i + 1 for i, p in enumerate(self.block_paths)}
        self.unit_of = self._unit_of_nodes()
        self.child_of = [self._child(node) for node in step.nodes]
        self.matmul_children: dict[int, set[str]] = {}  # unit -> its block's children that hold matmuls
        for unit, child, cost in zip(self.unit_of, self.child_of, self.costs):
            if child and cost.op_class in MATRIX_CLASSES:
                self.matmul_children.setdefault(unit, set()).add(child)
        self.tp_points = self._tp_points()

    # ---- units --------------------------------------------------------------------------
    def _block_index(self, path: str) -> int | None:
        """1-based block of a module path, or None outside every block."""
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            index = self._index.get(".".join(parts[:i]))
            if index is not None:
                return index
        return None

    def _unit_of_nodes(self) -> list[int]:
        """Unit per node: 0 embed, 1..L blocks, L + 1 head; -1 the optimizer."""
        last = len(self.block_paths) + 1
        units, seen_forward, seen_backward = [], False, False
        for node in self.step.nodes:
            if node.phase == "optimizer":
                units.append(-1)
                continue
            block = self._block_index(node.module_path)
            if block is not None:
                seen_forward |= node.phase == "forward"
                seen_backward |= node.phase == "backward"
                units.append(block)
            elif node.phase == "backward":
                units.append(0 if seen_backward else last)
            else:
                units.append(last if seen_forward or node.phase == "loss" else 0)
        return units

    def _child(self, node) -> str | None:
        """The block's child holding the node ("" for an op of the block itself); None outside blocks."""
        block = self._block_index(node.module_path)
        if block is None:
            return None
        rest = node.module_path[len(self.block_paths[block - 1]):].lstrip(".")
        return rest.split(".")[0]

    def _tp_points(self) -> dict[int, int]:
        """Node index -> bytes of the tensor-parallel all-reduce after it (forward; the backward
        mirrors it): the last matmul of each block child that holds matmuls and returns the model
        width, and the embedding's output."""
        if self.layout.tp == 1:
            return {}
        last_matmul: dict[tuple[int, str], int] = {}
        points: dict[int, int] = {}
        vocabulary = None  # the embedding with the largest table: the vocabulary-parallel one
        for i, (node, cost) in enumerate(zip(self.step.nodes, self.costs)):
            if node.phase != "forward":
                continue
            child = self.child_of[i]
            if child and cost.op_class in MATRIX_CLASSES:
                last_matmul[(self.unit_of[i], child)] = i
            elif (child is None and cost.op_class == "embedding" and node.outputs and node.inputs
                  and self.unit_of[i] == 0):
                if vocabulary is None or node.inputs[0].shape[0] > self.step.nodes[vocabulary].inputs[0].shape[0]:
                    vocabulary = i
        if vocabulary is not None:
            points[vocabulary] = self._activation_bytes(self.step.nodes[vocabulary].outputs[0])
        for i in last_matmul.values():
            out = self.step.nodes[i].outputs[0]
            if self.hidden is None or out.shape[-1] == self.hidden:
                points[i] = self._activation_bytes(out)
        return points

    def _activation_bytes(self, meta) -> int:
        return meta.numel * self.precision.matrix_bytes

    def sharded(self, i: int) -> bool:
        node = self.step.nodes[i]
        if self.layout.sp or node.phase == "loss":
            return True
        child = self.child_of[i]
        if child is None:
            return self.costs[i].op_class in SHARDED_OUTSIDE_BLOCKS
        return bool(child) and child in self.matmul_children.get(self.unit_of[i], ())

    def replicated_share(self) -> float:
        """The part of the forward's output bytes that tensor parallel leaves whole (without sp)."""
        whole = split = 0
        for i, (node, cost) in enumerate(zip(self.step.nodes, self.costs)):
            if node.phase == "forward" and cost.op_class != "free":
                if self.layout.tp > 1 and self.sharded(i):
                    split += cost.bytes_written
                else:
                    whole += cost.bytes_written
        return whole / (whole + split) if whole + split else 0.0

    def shards(self) -> tuple[int, ...]:
        tp, layout = self.layout.tp, self.layout
        optimizer = tp * layout.pp * (layout.dp if layout.shards_optimizer else 1)
        return tuple(optimizer if node.phase == "optimizer" else (tp if tp > 1 and self.sharded(i) else 1)
                     for i, node in enumerate(self.step.nodes))

    # ---- per-unit times -----------------------------------------------------------------
    def units(self, times, system: System, gpus_per_node: int) -> list[Unit]:
        layout = self.layout
        units = [Unit("embed")] + [Unit(p) for p in self.block_paths] + [Unit("head")]
        tp_group = group(layout.tp, 1, gpus_per_node)
        ep_group = group(layout.ep, layout.tp, gpus_per_node)
        routed = self._routed_bytes()
        recomputed = self.step.recompute  # a checkpointed block re-runs its forward, collectives too, in the backward
        for i, (node, t) in enumerate(zip(self.step.nodes, times)):
            u = self.unit_of[i]
            if u < 0:
                continue
            if node.phase == "backward":
                units[u].backward_s += t.total_s
            else:
                units[u].forward_s += t.total_s
            if i in self.tp_points and layout.tp > 1:
                s = collective_s("all_reduce", self.tp_points[i], tp_group, system)
                units[u].tp_forward_s += s
                units[u].tp_backward_s += s * (2 if recomputed else 1)
        for u, nbytes in routed.items():  # dispatch and combine, each way
            s = 2 * collective_s("all_to_all", nbytes, ep_group, system)
            units[u].ep_forward_s += s
            units[u].ep_backward_s += s * (2 if recomputed else 1)
        experts_share = self.structure.expert_trainable_elements / max(1, self.structure.trainable_elements)
        for u, b in enumerate(self.structure.blocks, start=1):
            dense = b.trainable_elements * (1 - experts_share)  # experts spread evenly over blocks with MoE
            expert = b.trainable_elements - dense
            units[u].trainable_elements = round((dense + expert / layout.ep) / layout.tp)
        head = self.structure.head_trainable_elements
        units[0].trainable_elements = (self.structure.other_trainable_elements - head) // layout.tp
        units[-1].trainable_elements = head // layout.tp
        return units

    def _routed_bytes(self) -> dict[int, int]:
        """Unit -> bytes of routed tokens each all-to-all moves (ep > 1): the input of the first
        matmul of each expert, summed over experts."""
        if self.layout.ep == 1:
            return {}
        first: dict[str, int] = {}
        for i, (node, cost) in enumerate(zip(self.step.nodes, self.costs)):
            if node.phase != "forward" or cost.op_class not in MATRIX_CLASSES:
                continue
            parts = node.module_path.split(".")
            if "experts" not in parts:
                continue
            at = parts.index("experts")
            expert = ".".join(parts[:at + 2] if at + 1 < len(parts) and parts[at + 1].isdigit() else parts[:at + 1])
            first.setdefault(expert, i)
        routed: dict[int, int] = {}
        for i in first.values():
            node = self.step.nodes[i]
            meta = node.inputs[0] if node.op.overloadpacket.__name__ != "addmm" else node.inputs[1]
            routed[self.unit_of[i]] = routed.get(self.unit_of[i], 0) + self._activation_bytes(meta)
        return routed


def _stages(units: list[Unit], pp: int) -> list[list[int]]:
    """Unit indices per pipeline stage: the blocks split evenly, embed on the first, head on the last."""
    blocks = len(units) - 2
    per = blocks // pp if pp > 1 else blocks
    stages = [list(range(1 + s * per, 1 + (s + 1) * per)) for s in range(pp)] if pp > 1 else [list(range(1, blocks + 1))]
    stages[0].insert(0, 0)
    stages[-1].append(len(units) - 1)
    return stages


def _one_f_one_b(stage: int, pp: int, micro: int) -> list[tuple[str, int]]:
    """The 1F1B order of micro-batch passes on `stage`: warm-up forwards, then forward/backward pairs."""
    warm = min(pp - stage - 1, micro)
    order = [("F", i) for i in range(warm)]
    f, b = warm, 0
    while b < micro:
        if f < micro:
            order.append(("F", f))
            f += 1
        order.append(("B", b))
        b += 1
    return order


def _schedule(units: list[Unit], optimizer_s: float, plan: _Plan, system: System, gpus_per_node: int,
              micro: int, serial: bool = False) -> tuple[Schedule, dict[str, float]]:
    """Every stage's compute and communication streams in one graph (module doc). Returns the
    schedule and the communication time per GPU by kind (tp, ep, pp, dp), averaged over stages.
    `serial`: communication runs on the cores that compute (a CPU's gloo), so on one stream."""
    layout, precision = plan.layout, plan.precision
    dp_group = group(layout.dp, layout.tp, gpus_per_node)
    pp_group = group(2, layout.tp * layout.dp, gpus_per_node)
    grad_bytes = 4 if precision.amp else precision.other_bytes
    param_bytes = precision.matrix_bytes if precision.amp else precision.other_bytes
    stages = _stages(units, layout.pp)
    send_s = 0.0
    if layout.pp > 1:
        send_s = collective_s("send_recv", _boundary_bytes(plan) // (layout.tp if layout.sp else 1), pp_group, system)
    fsdp = layout.shards_parameters and layout.dp > 1
    bucketed = not fsdp and layout.dp > 1
    reduce_kind = "reduce_scatter" if layout.scatters_gradients else "all_reduce"
    gathers_ahead = layout.data == "distopt" and layout.dp > 1  # last step's update, gathered under this forward
    s = Schedule()
    ends: dict[tuple[str, int, int], tuple[int, int]] = {}  # (F|B, stage, micro) -> (first task, last task)

    def gather(unit: Unit, stream, done: list[int], label: str) -> int | None:
        if not fsdp:
            return None
        limit = done[-FSDP_UNITS_AHEAD] if len(done) >= FSDP_UNITS_AHEAD else None
        return s.add(f"all-gather {unit.name}{label}", collective_s(
            "all_gather", unit.trainable_elements * param_bytes, dp_group, system), stream, [limit], comm=True)

    for st, members in enumerate(stages):
        compute, stream = ("compute", st), ("compute" if serial else "comm", st)
        for kind, i in _one_f_one_b(st, layout.pp, micro):
            done: list[int] = []
            first = None
            if kind == "F":
                for unit in (units[u] for u in members):
                    wait = gather(unit, stream, done, "")
                    if gathers_ahead and i == 0:
                        wait = s.add(f"all-gather {unit.name} (updated)", collective_s(
                            "all_gather", unit.trainable_elements * param_bytes, dp_group, system), stream, [],
                            comm=True)
                    t = s.add(f"forward {unit.name} mb{i}", unit.forward_s, compute, [wait])
                    first = t if first is None else first
                    if unit.tp_forward_s or unit.ep_forward_s:
                        t = s.add(f"tp/ep forward {unit.name}", unit.tp_forward_s + unit.ep_forward_s, compute, [t],
                                  comm=True)
                    done.append(t)
            else:
                bucket, final = 0.0, i == micro - 1
                backward = [units[u] for u in reversed(members)]
                gathers = [gather(backward[0], stream, done, " (backward)")]
                for k, unit in enumerate(backward):
                    grads = unit.trainable_elements * grad_bytes
                    pieces = max(1, math.ceil(grads / BUCKET_BYTES)) if final and bucketed else 1
                    wait = gathers[k]
                    if k + 1 < len(backward):  # backward prefetch: the next unit's gather goes out first
                        gathers.append(gather(backward[k + 1], stream, done, " (backward)"))
                    for piece in range(pieces):
                        t = s.add(f"backward {unit.name} mb{i}", unit.backward_s / pieces, compute, [wait])
                        first = t if first is None else first
                        if final and bucketed:
                            bucket += grads / pieces
                            if bucket >= BUCKET_BYTES or (k == len(members) - 1 and piece == pieces - 1):
                                s.add(f"{reduce_kind.replace('_', '-')} bucket", collective_s(
                                    reduce_kind, bucket, dp_group, system), stream, [t], comm=True)
                                bucket = 0.0
                    if unit.tp_backward_s or unit.ep_backward_s:
                        t = s.add(f"tp/ep backward {unit.name}", unit.tp_backward_s + unit.ep_backward_s, compute,
                                  [t], comm=True)
                    if fsdp:
                        s.add(f"reduce-scatter {unit.name}", collective_s("reduce_scatter", grads, dp_group, system),
                              stream, [t], comm=True)
                    done.append(t)
            ends[(kind, st, i)] = (first, done[-1])
        drained = s.add(f"gradients reduced s{st}", 0.0, stream)
        update = s.add(f"optimizer s{st}", optimizer_s, compute, [drained])
        if layout.data in ("zero1", "zero2") and layout.dp > 1:
            held = sum(units[u].trainable_elements for u in members) * param_bytes
            s.add(f"all-gather parameters s{st}", collective_s("all_gather", held, dp_group, system), stream,
                  [update], comm=True)
    for st in range(len(stages) - 1):  # activations down the pipeline, gradients back up
        for i in range(micro):
            send = s.add(f"send activations s{st} mb{i}", send_s, None, [ends[("F", st, i)][1]], comm=True)
            s.graph.add_edge(send, ends[("F", st + 1, i)][0])
            back = s.add(f"send gradients s{st + 1} mb{i}", send_s, None, [ends[("B", st + 1, i)][1]], comm=True)
            s.graph.add_edge(back, ends[("B", st, i)][0])
    comm = {"tp": 0.0, "ep": 0.0, "pp": 0.0, "dp": 0.0}
    for _, data in s.graph.nodes(data=True):
        if data["comm"]:
            name = data["name"]
            comm["tp" if name.startswith("tp/ep") else "pp" if name.startswith("send") else "dp"] += data["duration_s"]
    comm["ep"] = sum(u.ep_forward_s + u.ep_backward_s for u in units) * micro
    comm["tp"] = max(0.0, comm["tp"] - comm["ep"])
    return s, {k: v / len(stages) for k, v in comm.items()}


def _boundary_bytes(plan: _Plan) -> int:
    """Bytes of one micro-batch's activations between pipeline stages: a block's output."""
    if not plan.block_paths:
        return 0
    last = None
    for i, node in enumerate(plan.step.nodes):
        if node.phase == "forward" and plan.unit_of[i] == 1 and node.outputs:
            last = node.outputs[0]
    return last.numel * plan.precision.matrix_bytes if last is not None else 0
