"""Memory of a captured step: parameters, gradients, optimizer state, activations and the peak.

:func:`step_memory` walks the captured graph once, in execution order, and gives every tensor
storage a live interval:

  * parameters, buffers, module constants and the inputs live the whole step;
  * an op output that is a new storage is allocated when its op runs and freed after the
    last op that reads it or any view of it (a view keeps its base alive);
  * views and in-place ops allocate nothing: they alias an input. Which output aliases which
    input comes from the op's schema (the ``Tensor(a)`` / ``Tensor(a!)`` annotations that
    functionalization relies on: views, in-place and out= ops), and for the few views without
    one (``_unsafe_view``) from the cost rules' "free" class, whose factories (``empty``,
    ``empty_like``, ``new_empty``: no traffic, but a new storage) are excepted;
  * in training, parameter gradients live from their op to the end of the step: the backward
    storages that the optimizer update (or a graph output) reads or, in a step recorded
    without them, that nothing reads after the backward made them. The optimizer state
    (Adam's two moments...) lives all step. An "optimizer"-phase fused update (e.g.
    aten._fused_adamw_) is in place and allocates nothing; the state tensors it reads are
    counted once, from the optimizer's formula, whether or not the step recorded that phase.
    Gradients that share a storage (at batch 1 a ViT's class-token gradient is a slice of its
    position-embedding gradient) count once, as in the real step. With gradient accumulation
    (step.accumulate > 1; the graph holds one micro-batch) the peak is a later micro-batch's:
    the gradients summed so far live all step, and each new one is added in, then freed.

The peak is the largest sum of live storages at any op. The graph's node order is the order
the ops ran in (capture records them as they execute), so liveness is one linear sweep over
intervals; a graph library (networkx) would only help to re-schedule ops, which the
estimate does not do.

Element sizes follow the precision as the cost rules do (:meth:`Precision.float_bytes` of the
producing op's class; integer tensors keep their own size). Parameters, gradients, buffers,
inputs and optimizer state are "master" copies: fp32 (4 bytes) for fp32, tf32 and the amp-*
precisions, 2 bytes under pure fp16/bf16. Under amp-* every weight a matmul, conv or attention
op reads also has a half copy (the matrix element size): from that op to the end of the forward
and loss (autocast caches it until its context exits) or to the last backward op that reads it
(autograd saved it), whichever is later; and a gradient computed in half is cast to its fp32
master copy, both live at that moment. fp8 inference stores its weights quantized, as fp8
serving stacks (TensorRT-LLM, vLLM, torchao float8) run them: a parameter a matmul, conv or
attention reads in fp8 (1 byte), the others (norms, embeddings) in bf16, with no fp32 master
and no cast copies; fp8 training keeps fp32 masters and fp8 copies, as Transformer Engine does.

:func:`measure_step_memory` runs a real step and tracks every storage the ops create (see
its doc); bench/memory_accuracy.py sets the two side by side. :func:`max_batch` finds the
largest batch that fits a memory capacity from two captures.

Example:
    >>> step = capture(model, (torch.randn(8, 3, 224, 224),), mode="train", optimizer=None)
    >>> m = step_memory(step, "fp32", optimizer="adamw")
    >>> m.peak_bytes / 2**20, m.peak_phase, m.peak_breakdown["activations"] / 2**20
"""
from __future__ import annotations

import contextlib
import operator
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import fx
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from .batch_scaling import steps_by_batch
from .capture import CapturedStep, DefaultLoss
from .costs import MATRIX_CLASSES, rule_for
from .optimizer import STATE_TENSORS, check_optimizer
from .precision import Precision, get_precision
from .rules.attention import SDPA_KERNELS
from .recompute import recomputing
from .tensor_meta import TensorMeta

# ops of the cost rules' "free" class (no traffic) that do allocate their output
ALLOCATING = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "split_copy")
KINDS = ("parameters", "weight_copies", "buffers", "inputs", "gradients", "optimizer", "activations",
         "temporaries")


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one step at one precision. `activations_bytes` is, in training, every forward or
    loss storage that the backward reads (saved for backward), once per storage; in inference,
    the op outputs live at the peak. `peak_breakdown` splits `peak_bytes` by KINDS
    ("activations" live at the peak and saved for backward, "temporaries" the rest);
    `peak_node` indexes step.nodes (-1 for a step without ops)."""

    mode: str
    precision: str
    optimizer: str | None  # None in inference
    parameters_bytes: int
    weight_copies_bytes: int  # half copies of the matmul/conv weights under amp-*, else 0
    buffers_bytes: int  # buffers and module constants
    inputs_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    peak_bytes: int
    peak_node: int
    peak_op: str
    peak_phase: str
    peak_module: str
    peak_breakdown: dict[str, int]
    kv_cache_bytes: int = 0  # inference of a decoder: the keys and values of every causal attention


@dataclass
class _Storage:
    meta: TensorMeta
    nbytes: int
    kind: str  # one of KINDS
    start: int  # graph position of the op that made it
    end: int  # graph position of its last use
    phase: str = ""  # phase of the producing op ("" for placeholders)


def step_memory(step: CapturedStep, precision: str | Precision, optimizer: str | None = None) -> MemoryEstimate:
    """Memory of `step` at `precision` (see the module doc). `optimizer` (training only) is one
    of sgd, sgd-momentum, adam, adamw: the step's recorded optimizer when None, else adamw."""
    precision = get_precision(precision) if isinstance(precision, str) else precision
    train = step.mode == "train"
    optimizer = check_optimizer(optimizer or step.optimizer or "adamw") if train else None
    nodes = list(step.graph.nodes)
    storages, op_positions = _storages(step, nodes, precision)
    master = 4 if precision.amp else precision.other_bytes
    state_bytes = STATE_TENSORS[optimizer] * step.trainable_parameters * master if train else 0
    end = len(nodes)

    live = [0] * (end + 1)  # a difference array over graph positions: +bytes at start, - after end
    for s in storages:
        live[s.start] += s.nbytes
        live[s.end + 1] -= s.nbytes
    peak, peak_pos, running = 0, 0, 0
    ops = set(op_positions)
    for pos in range(end):
        running += live[pos]
        if (pos in ops or not ops) and running > peak:
            peak, peak_pos = running, pos
    breakdown = dict.fromkeys(KINDS, 0)
    for s in storages:
        if s.start <= peak_pos <= s.end:
            breakdown[s.kind] += s.nbytes
    breakdown["optimizer"] = state_bytes

    total = {kind: sum(s.nbytes for s in storages if s.kind == kind) for kind in KINDS}
    activations = total["activations"] if train else breakdown["temporaries"]
    kv_cache = 0 if train else kv_cache_bytes(step, precision)
    op = nodes[peak_pos].meta.get("roofline") if ops else None
    return MemoryEstimate(
        mode=step.mode, precision=precision.name, optimizer=optimizer,
        parameters_bytes=total["parameters"], weight_copies_bytes=total["weight_copies"],
        buffers_bytes=total["buffers"], inputs_bytes=total["inputs"], gradients_bytes=total["gradients"],
        optimizer_bytes=state_bytes, activations_bytes=activations, peak_bytes=peak + state_bytes + kv_cache,
        peak_node=op_positions.index(peak_pos) if ops else -1, peak_op=op.name if op else "",
        peak_phase=op.phase if op else "", peak_module=op.module_path if op else "", peak_breakdown=breakdown,
        kv_cache_bytes=kv_cache)


def kv_cache_bytes(step: CapturedStep, precision: Precision) -> int:
    """The KV cache a decoder keeps while it generates: the keys and values of every causal
    attention of the forward at the step's batch and sequence length, at the attention element
    size. It lives the whole step, so an inference peak adds it (counting the one layer's keys
    and values live at the peak twice: at most 1/layers of the cache). Keys and values that
    the model repeats for grouped-query attention before the attention op count repeated."""
    size = precision.float_bytes("attention")
    total = 0
    for node in step.nodes:
        spec = SDPA_KERNELS.get(node.op.overloadpacket.__name__)
        if node.phase != "forward" or spec is None or spec[2]:
            continue
        q_index, causal_index = spec[0], spec[1]
        causal = node.kwargs.get("is_causal", node.args[causal_index] if len(node.args) > causal_index else False)
        if causal:
            key, value = node.args[q_index + 1:q_index + 3]
            total += (key.distinct + value.distinct) * size
    return total


def _read_by_matrix_op(node: fx.Node, depth: int = 4) -> bool:
    """Whether a matmul, convolution or attention reads `node`, directly or through free ops
    (views, transposes) at most `depth` deep."""
    for user in node.users:
        op = user.meta.get("roofline")
        rule = rule_for(op) if op is not None else None
        if rule is not None and rule.op_class in MATRIX_CLASSES:
            return True
        if depth and (rule is None or rule.op_class == "free") and _read_by_matrix_op(user, depth - 1):
            return True
    return False


def _storages(step: CapturedStep, nodes: list[fx.Node], precision: Precision):
    """Every storage of the step with its live interval, and the graph positions of the ops."""
    position = {node: i for i, node in enumerate(nodes)}
    master = 4 if precision.amp else precision.other_bytes
    last = len(nodes) - 1
    kinds = placeholder_kinds(step, nodes)
    storage_of: dict[fx.Node, _Storage] = {}
    storages: list[_Storage] = []
    op_positions: list[int] = []
    half_weights: dict[int, tuple] = {}  # under amp: id(parameter storage) -> (meta, first, last use)
    shape_of: dict[fx.Node, tuple[int, ...]] = {}  # each op output's shape

    def new(meta: TensorMeta, size: int, kind: str, start: int, end: int, phase: str = "") -> _Storage:
        s = _Storage(meta, _nbytes(meta, size), kind, start, end, phase)
        storages.append(s)
        return s

    quantized = precision.name == "fp8" and step.mode == "inference"  # weights stored in fp8 (module doc)
    for pos, node in enumerate(nodes):
        if node.op in ("placeholder", "get_attr"):
            if node.op == "get_attr" and node.users and all(_phase(u) == "optimizer" for u in node.users):
                continue  # optimizer state (or its step count): counted from the formula
            kind = kinds.get(node, "buffers")
            size = master
            if quantized and kind == "parameters":
                size = precision.matrix_bytes if _read_by_matrix_op(node) else precision.other_bytes
            storage_of[node] = new(node.meta["tensor_meta"], size, kind, 0, last)
        elif node.op == "call_function" and "roofline" in node.meta:
            op_positions.append(pos)
            op = node.meta["roofline"]
            rule = rule_for(op)
            size = precision.float_bytes(rule.op_class if rule else "unsupported", op.op.overloadpacket.__name__)
            children = sorted((u for u in node.users if u.target is operator.getitem), key=lambda u: u.args[1])
            for value, meta in zip(children or [node], op.outputs):
                shape_of[value] = meta.shape
                base = _aliased_input(node, value)
                storage_of[value] = (storage_of[base] if base in storage_of
                                     else new(meta, size, "temporaries", pos, pos, op.phase))
            if precision.amp and not quantized and rule and rule.op_class in MATRIX_CLASSES:
                for arg in node.all_input_nodes:
                    s = storage_of.get(arg)
                    if s is not None and s.kind == "parameters":  # its half copy: first and last use
                        first = half_weights.get(id(s), (s.meta, pos))[1]
                        half_weights[id(s)] = (s.meta, first, pos)
    # the gradients: what the optimizer update (or a graph output) takes when the step has one,
    # else backward values of a parameter's shape that nothing reads
    takers = any(_takes_gradients(node) for node in nodes)
    shapes = {storage_of[n].meta.shape for n, kind in kinds.items() if kind == "parameters"}
    for node, s in storage_of.items():  # last uses, and which storages are saved for backward
        for user in node.users:
            phase = _phase(user)
            if phase != "optimizer":
                s.end = max(s.end, position[user])
            if phase == "backward" and s.phase in ("forward", "loss") and not _reads_metadata_only(user):
                s.kind = "activations"  # saved for backward
        if s.phase == "backward" and (any(_takes_gradients(u) for u in node.users) if takers else
                                      not node.users and shape_of[node] in shapes):
            # a parameter's gradient: kept to the end of the step, in master size; one computed in
            # half (under amp) is cast to it, the half copy freed right after
            if s.nbytes < _nbytes(s.meta, master):
                new(s.meta, s.nbytes // s.meta.distinct, "temporaries", s.start, s.start, s.phase)
            if step.accumulate > 1:  # the sum of the earlier micro-batches' gradients lives all step;
                new(s.meta, master, "temporaries", s.start, s.start, s.phase)  # this one is added in
                s.start = 0
            s.kind, s.end, s.nbytes = "gradients", last, _nbytes(s.meta, master)
    # autocast caches each weight's half copy until it exits (after the forward and the loss);
    # autograd keeps the copies the backward reads until then
    forward_end = max((position[n] for n in nodes if _phase(n) in ("forward", "loss")), default=last)
    for meta, first, last_use in half_weights.values():
        new(meta, precision.matrix_bytes, "weight_copies", first, max(last_use, forward_end))
    return storages, op_positions


def _nbytes(meta: TensorMeta, float_size: int) -> int:
    return meta.distinct * (float_size if meta.is_float else meta.itemsize)


def _takes_gradients(node: fx.Node) -> bool:
    """The optimizer update or the graph's output: what the gradients of a step are given to."""
    return node.op == "output" or _phase(node) == "optimizer"


def _reads_metadata_only(node: fx.Node) -> bool:
    """ones_like(loss) starts the backward: a *_like or new_* factory reads its argument's shape
    and dtype, not its data, so that argument is not saved for backward."""
    name = node.target.__name__.split(".")[0] if node.target is not operator.getitem else ""
    return name.endswith("_like") or name.startswith("new_")


def _phase(node: fx.Node) -> str:
    """The phase of an op or getitem node ("" for placeholders and constants)."""
    if node.target is operator.getitem:
        node = node.args[0]
    op = node.meta.get("roofline")
    return op.phase if op is not None else ""


def _aliased_input(node: fx.Node, value: fx.Node) -> fx.Node | None:
    """The input node whose storage output `value` of `node` shares, or None for a new storage:
    the argument the schema's alias annotation names (views, in-place and out= results), else
    the first tensor input of an unannotated op of the "free" class that is not in ALLOCATING."""
    schema = node.target._schema
    index = value.args[1] if value is not node and len(schema.returns) > 1 else 0
    if index >= len(schema.returns) or schema.returns[index].alias_info is None:
        rule = rule_for(node.meta["roofline"])  # views without annotation (_unsafe_view, lift)
        free = rule is not None and rule.op_class == "free" and node.target.__name__.split(".")[0] not in ALLOCATING
        return node.all_input_nodes[0] if free and node.all_input_nodes else None
    sets = schema.returns[index].alias_info.before_set
    for i, arg in enumerate(schema.arguments):
        if arg.alias_info is None or not (arg.alias_info.before_set & sets):
            continue
        given = node.kwargs.get(arg.name) if arg.kwarg_only or i >= len(node.args) else node.args[i]
        if isinstance(given, (list, tuple)):  # a list argument: the element at this output's place
            given = given[value.args[1]] if value is not node and value.args[1] < len(given) else None
        return given if isinstance(given, fx.Node) else None
    return None


def placeholder_kinds(step: CapturedStep, nodes: list[fx.Node]) -> dict[fx.Node, str]:
    """Capture's placeholders are the parameters (unique, step.parameters elements in all),
    then the buffers, then the inputs named input_0, input_1, ..."""
    kinds, seen = {}, 0
    for node in nodes:
        if node.op != "placeholder":
            continue
        if re.fullmatch(r"input_\d+", node.name):
            kinds[node] = "inputs"
        elif seen < step.parameters:
            kinds[node] = "parameters"
            seen += node.meta["tensor_meta"].numel
        else:
            kinds[node] = "buffers"
    return kinds


def max_batch(make_step: Callable[[int], CapturedStep], capacity_bytes: int, precision: str | Precision = "fp32",
              optimizer: str | None = None, limit: int = 1 << 20, known: CapturedStep | None = None) -> int:
    """The largest batch b <= `limit` whose step (``make_step(b)``, a capture) has a peak within
    `capacity_bytes`; 0 when batch 1 does not fit.

    At most two captures: estimator.batch_scaling derives the step at any batch from `known` (a
    step already captured, optional) and one capture at twice its batch, or from batches 2 and 4
    (steps_by_batch, which captures every probe only where the two captures do not scale). Each
    probe is then step_memory of a derived step (no capture). The search uses that the peak
    grows about linearly with the batch (exactly: the largest of affine functions, one per op,
    where every size is at most linear in the batch): after batch 1 it probes one past the batch
    that a line through the two largest batches that fit predicts (at most 8x the largest, and
    2x while there is one point), then narrows the bracket [fits, does not fit] by interpolating
    the peak between its ends, falling back to bisection whenever a probe did not halve the
    bracket. A linear peak takes 4 probes. The peak is assumed to grow with the batch.
    """
    step_at = steps_by_batch(make_step, known)
    peaks: dict[int, int] = {}

    def fits(batch: int) -> bool:
        peaks[batch] = step_memory(step_at(batch), precision, optimizer).peak_bytes
        return peaks[batch] <= capacity_bytes

    if not fits(1):
        return 0
    lo, hi, halved = 1, None, True
    while hi is None or hi - lo > 1:
        if hi is None:  # grow: extrapolate the line through the two largest batches that fit
            below = max((b for b in peaks if b < lo), default=None)
            slope = (peaks[lo] - peaks[below]) / (lo - below) if below else 0
            grow = 2 * lo if slope <= 0 else lo + int((capacity_bytes - peaks[lo]) / slope) + 1
            batch = min(limit, max(lo + 1, min(grow, 8 * lo)))
        elif halved:  # narrow: interpolate the capacity between the bracket's ends
            batch = lo + int((capacity_bytes - peaks[lo]) * (hi - lo) / (peaks[hi] - peaks[lo]))
            batch = min(hi - 1, max(lo + 1, batch))
        else:
            batch = (lo + hi) // 2
        width = None if hi is None else hi - lo
        if fits(batch):
            lo = batch
            if lo >= limit:
                return limit
        else:
            hi = batch
        halved = width is None or 2 * (hi - lo) <= width
    return lo


# ---- measurement ----------------------------------------------------------------------------

class _StorageTracker(TorchDispatchMode):
    """Counts the bytes of live tensor storages: every storage an op returns is added the first
    time it is seen and removed when it is freed (weakref.finalize on the storage: torch keeps
    one Python object per storage while it lives); `peak_bytes` is the largest total seen."""

    def __init__(self, tensors):
        super().__init__()
        self.live_bytes = self.peak_bytes = 0
        self._seen: set[int] = set()
        for t in tensors:
            self._track(t)

    def _track(self, t: torch.Tensor) -> None:
        storage = t.untyped_storage()
        key = id(storage)
        if key in self._seen:
            return
        self._seen.add(key)
        self.live_bytes += storage.nbytes()
        self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        weakref.finalize(storage, self._free, key, storage.nbytes())

    def _free(self, key: int, nbytes: int) -> None:
        self._seen.discard(key)
        self.live_bytes -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t)
        return out


def measure_step_memory(model: torch.nn.Module, inputs: tuple, mode: str = "train", recompute: bool = False) -> int:
    """The peak bytes of live tensor storage of one real step of `model` on `inputs`: the step
    capture records, with optimizer=None (train: forward, DefaultLoss, torch.autograd.grad of
    the loss with respect to the trainable parameters; inference: a no_grad forward), with
    the blocks checkpointed as capture's `recompute` does when `recompute` is set.

    The parameters, buffers and inputs count from the start. Storages that kernels allocate
    inside an op and free before returning (workspaces, oneDNN reorders) are not seen, nor is
    the allocator's fragmentation or caching: this is the quantity step_memory predicts,
    not the process's RSS."""
    state = [*model.parameters(), *model.buffers(), *(t for t in tree_leaves(inputs) if isinstance(t, torch.Tensor))]
    trainable = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    model.train(mode == "train")
    tracker = _StorageTracker(state)
    with tracker, recomputing(model) if recompute else contextlib.nullcontext():
        if mode == "train":
            grads = torch.autograd.grad(DefaultLoss()(model(*inputs)), trainable, allow_unused=True)
            del grads
        else:
            with torch.no_grad():
                model(*inputs)
    return tracker.peak_bytes


def zoo_peak_check(name: str, mode: str, batch: int, **sizes) -> tuple[MemoryEstimate, int]:
    """(predicted MemoryEstimate, measured peak bytes) of zoo model `name`'s step: fp32 and no
    optimizer on either side (optimizer "sgd" has no state). `mode` is "train", "inference" or
    "train+recompute" (blocks checkpointed). The prediction comes from a meta-device capture,
    the measurement from one real CPU step (measure_step_memory)."""
    import roofline_zoo

    from .capture import capture

    entry = roofline_zoo.get(name)
    recompute = mode == "train+recompute"
    mode = mode.split("+")[0]
    model, inputs = entry.build(batch=batch, device="meta", **sizes)
    estimate = step_memory(capture(model, inputs, mode=mode, optimizer=None, recompute=recompute), "fp32",
                           optimizer="sgd")
    torch.manual_seed(0)
    model, inputs = entry.build(batch=batch, device="cpu", **sizes)
    return estimate, measure_step_memory(model, inputs, mode, recompute=recompute)
