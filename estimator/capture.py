"""Capture one step of a model as a torch.fx graph of aten ops, forward and backward.

The model runs under FakeTensorMode (CPU fake tensors: shapes and dtypes, no storage, so a
70B model is analysed on a laptop) with a dispatch mode on top that records every aten op
into an fx.Graph. Each call node's ``meta["roofline"]`` is an :class:`OpNode`: the op, the
input/output shapes and dtypes, the owning module's path and type, and the phase.

Modes:
  * ``"inference"``: the model in eval mode, forward under no_grad.
  * ``"train"``: the model in train mode, forward, the loss (:class:`DefaultLoss` unless
    ``loss_fn`` is given), and the backward of the loss with respect to every parameter that
    requires grad, taken from the real autograd graph.

Example:
    >>> step = capture(model, (torch.randn(8, 3, 224, 224),), mode="train")
    >>> step.nodes[0].op, step.nodes[0].module_path
    (<OpOverload(op='aten.convolution', overload='default')>, 'conv1')
"""
from __future__ import annotations

import contextlib
import gc
import logging
import operator
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.utils.stateless import _reparametrize_module
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode
from torch.utils._pytree import tree_leaves, tree_map_only

from .block_replay import BlockReplay, ReplayAbort
from .data_dependent import fake_empty, run_fake
from .device_dispatch import DISPATCHES, cuda_dispatch
from .dynamo_free import dynamo_unimported
from .errors import CaptureError, first_line
from .recompute import recomputing
from .optimizer import CLASS_NAMES, DEFAULT_OPTIMIZER, check_optimizer, prepare_fused_step
from .model_structure import model_structure
from .module_tracking import ModuleOwnerTracker
from .moe_routing import routed_experts
from .tensor_meta import TensorMeta

log = logging.getLogger(__name__)

MODES = ("inference", "train")
PHASES = ("forward", "loss", "backward", "optimizer")


@dataclass(frozen=True, slots=True)
class OpNode:
    """One aten op of the step, as the cost rules see it (tensors replaced by TensorMeta)."""

    op: torch._ops.OpOverload
    phase: str  # "forward" | "loss" | "backward"
    module_path: str  # e.g. "layer1.0.conv2"; "" for the model itself
    module_type: str  # e.g. "Conv2d"
    args: tuple
    kwargs: dict
    inputs: tuple[TensorMeta, ...]  # every tensor argument, in order
    outputs: tuple[TensorMeta, ...]

    @property
    def name(self) -> str:
        return str(self.op)  # e.g. "aten.mm.default"


@dataclass(frozen=True)
class CapturedStep:
    """A captured step: the fx graph plus what the report needs about the model."""

    graph: fx.Graph
    nodes: tuple[OpNode, ...]
    mode: str
    batch: int
    tokens_per_sample: int | None  # sequence length for token inputs, else None
    parameters: int  # unique parameters (tied weights once)
    trainable_parameters: int
    model_name: str
    optimizer: str | None = None  # the optimizer recorded in phase "optimizer" (train mode)
    accumulate: int = 1  # micro-batches per optimizer step: forward and backward run this many times
    recompute: bool = False  # blocks checkpointed: their forward re-runs in the backward
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deferred:
    """An input built inside the capture's fake mode, before recording starts (its tensors are
    fake and its construction is not part of the step): a KV cache of a given length, say.

    Example:
        >>> capture(model, {"input_ids": ids, "past_key_values": Deferred(lambda: make_cache(...))}, "inference")
    """

    build: Callable[[], Any]


class DefaultLoss(nn.Module):
    """The documented default training loss.

    * the model's own loss (a ``.loss`` attribute or ``"loss"`` key holding a scalar tensor, as
      Hugging Face models return when given ``labels``): used as it is, so one loss runs;
    * a ``.logits`` attribute or a plain tensor output: cross-entropy over the last dimension
      (classes or vocabulary) against integer targets, i.e. classification and language
      modelling; a 4-D (N, C, H, W) output takes per-pixel cross-entropy over C (segmentation);
    * any other output (a dict, tuple or ModelOutput without logits, e.g. BertModel's hidden
      states): the sum of the means of its floating-point tensors.
    """

    def forward(self, output):
        own = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(own, torch.Tensor) and own.is_floating_point() and own.numel() == 1:
            return own
        logits = getattr(output, "logits", output)
        if isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() == 4:
            # (N, C, H, W): per-pixel classes along dim 1 (segmentation)
            n, _, h, w = logits.shape
            return F.cross_entropy(logits, torch.zeros(n, h, w, dtype=torch.long, device=logits.device))
        if isinstance(logits, torch.Tensor) and logits.is_floating_point() and logits.dim() >= 2:
            flat = logits.reshape(-1, logits.shape[-1])
            target = torch.zeros(flat.shape[0], dtype=torch.long, device=flat.device)
            return F.cross_entropy(flat, target)
        tensors = [t for t in _tensor_leaves(output) if t.is_floating_point()]
        if not tensors:
            raise CaptureError("the model's output holds no floating-point tensor to train on; "
                               "pass a loss_fn that maps the output to a scalar")
        return sum(t.float().mean() for t in tensors)


def _tensor_leaves(output) -> list[torch.Tensor]:
    if hasattr(output, "to_tuple"):  # transformers ModelOutput
        output = output.to_tuple()
    elif isinstance(output, dict):
        output = list(output.values())
    return [t for t in tree_leaves(output) if isinstance(t, torch.Tensor)]


class _GraphRecorder(TorchDispatchMode):
    """Appends every aten op that reaches dispatch to an fx.Graph, with its OpNode."""

    def __init__(self, tracker: ModuleOwnerTracker):
        super().__init__()
        self.graph = fx.Graph()
        self.nodes: list[OpNode] = []
        self.phase = "forward"
        self.owner: tuple[str, str] | None = None  # overrides the tracker's owner (the optimizer)
        self._tracker = tracker
        self._fx_of: dict[int, fx.Node] = {}
        self._alive: list[torch.Tensor] = []  # keeps ids unique while the capture runs
        self._consts = 0  # get_attr nodes made so far
        self.fx_nodes: list[fx.Node] = []  # every node made after the placeholders, in order
        self.binds: list[tuple[torch.Tensor, fx.Node]] | None = None  # collected while a list (block_replay)

    def placeholder(self, name: str, t: torch.Tensor) -> None:
        node = self.graph.placeholder(name.replace(".", "_"))
        node.meta["tensor_meta"] = TensorMeta.of(t)
        self.bind(t, node)

    def bind(self, t: torch.Tensor, node: fx.Node) -> None:
        """From now on, ops that read `t` read the output of `node`."""
        self._fx_of[id(t)] = node
        self._alive.append(t)
        if self.binds is not None:
            self.binds.append((t, node))

    def innermost(self) -> bool:
        """No other dispatch mode runs inside this one (a model's own): it can be paused."""
        return _get_current_dispatch_mode() is self

    @contextlib.contextmanager
    def paused(self):
        """Ops run on fake tensors without reaching the recorder: not part of the step (state
        made before it, block_replay's fresh outputs)."""
        if not self.innermost():
            raise CaptureError("a dispatch mode entered inside the capture is still active")
        self.__exit__(None, None, None)
        try:
            yield
        finally:
            self.__enter__()

    def node_of(self, t: torch.Tensor) -> fx.Node | None:
        return self._fx_of.get(id(t))

    def add(self, target, args: tuple, kwargs: dict, op_node: OpNode | None = None) -> fx.Node:
        """Append a call node (with its OpNode, except for a getitem) to the graph."""
        # arguments set after: create_node scans them (a pytree walk) for SymInts, which fake
        # tensors of static shapes never hold, and the scan costs as much as the node
        node = self.graph.create_node("call_function", target)
        node.args = args
        if kwargs:
            node.kwargs = kwargs
        if op_node is not None:
            node.meta["roofline"] = op_node
            self.nodes.append(op_node)
        self.fx_nodes.append(node)
        return node

    def _fx_arg(self, t: torch.Tensor) -> fx.Node:
        node = self._fx_of.get(id(t))
        if node is None:  # a tensor made outside the recorder (a module constant)
            node = self.graph.create_node("get_attr", f"_const{self._consts}")
            self._consts += 1
            node.meta["tensor_meta"] = TensorMeta.of(t)
            self.fx_nodes.append(node)
            self.bind(t, node)
        return node

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.namespace == "prim":  # metadata queries (prim.device), not work
            return func(*args, **kwargs)
        path, mtype = self.owner or self._tracker.owner()
        out = run_fake(func, args, kwargs, path or mtype)
        inputs: list[TensorMeta] = []  # every tensor argument's, in order

        def meta(t: torch.Tensor) -> TensorMeta:
            inputs.append(TensorMeta.of(t))
            return inputs[-1]

        args_meta, kwargs_meta = _map_tensors(meta, args), _map_tensors(meta, kwargs)
        leaves = tree_leaves(out)
        outs = [t for t in leaves if isinstance(t, torch.Tensor)]
        op_node = OpNode(func, self.phase, path, mtype, args_meta, kwargs_meta, tuple(inputs),
                         tuple(TensorMeta.of(t) for t in outs))
        node = self.add(func, _map_tensors(self._fx_arg, args), _map_tensors(self._fx_arg, kwargs), op_node)
        if isinstance(out, torch.Tensor):
            self.bind(out, node)
        else:  # a tuple return: one getitem node per tensor, at its position in the return
            for i, t in enumerate(leaves):
                if isinstance(t, torch.Tensor):
                    self.bind(t, self.add(operator.getitem, (node, i), {}))
        return out


def _map_tensors(fn, x):
    """fn(t) for every tensor t in aten arguments (tuples, lists and dicts of them), the rest kept:
    tree_map_only for the structures aten passes, at a fraction of its cost per op."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if type(x) is tuple or type(x) is list:
        return type(x)([_map_tensors(fn, v) for v in x])
    if type(x) is dict:
        return {k: _map_tensors(fn, v) for k, v in x.items()}
    return x


@contextlib.contextmanager
def _no_cyclic_gc():
    """Python's cyclic collector off while a step is recorded: its passes over the many live fake
    tensors and nodes took a fifth of the capture (ResNet-50), and the step makes little cyclic
    garbage (Llama-3-70B: tens of MB). Reference counting frees as usual."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def _quiet_fake_tensor_log():
    """FakeTensorMode logs a traceback at ERROR when a shape check fails; the failure reaches
    the user once, as capture's one-line CaptureError."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _fake_like(mode: FakeTensorMode, t: torch.Tensor, requires_grad: bool = False) -> torch.Tensor:
    """A CPU fake tensor of `mode` with t's shape, stride and dtype (data_dependent.fake_empty:
    made directly, which counts for models of thousands of parameters)."""
    fake = fake_empty(mode, t.shape, t.dtype, stride=t.stride())
    return fake.requires_grad_(requires_grad) if t.is_floating_point() or t.is_complex() else fake


def _describe(inputs) -> str:
    return ", ".join(repr(TensorMeta.of(t)) if isinstance(t, torch.Tensor) else type(t).__name__
                     for t in tree_leaves(inputs))


@dynamo_unimported()  # FakeTensorMode and meta kernels without Dynamo's import (estimator.dynamo_free)
def capture(model: nn.Module, example_inputs: tuple | dict, mode: str = "train",
            loss_fn: Callable[[Any], torch.Tensor] | None = None, model_name: str | None = None,
            optimizer: str | None = DEFAULT_OPTIMIZER, accumulate: int = 1, recompute: bool = False,
            dispatch: str = "cpu", moe_skew: float = 1.0, replay_blocks: bool = True) -> CapturedStep:
    """Record one inference or training step of `model` on `example_inputs` (see module doc).

    `replay_blocks`: record a run of identical blocks once and append its ops again for the
    others (estimator.block_replay; the same step, faster); off with recompute. False records
    every block.

    `dispatch`: "cpu" records the CPU's own kernel choices; "cuda" records what a CUDA device
    would run where the two differ (estimator.device_dispatch: fused attention with dropout).
    `moe_skew`: the routing assumption for transformers' eager experts loops (estimator.moe_routing;
    1 = balanced). Data-dependent ops follow estimator.data_dependent.

    `example_inputs` is a tuple of positional arguments or a dict of keyword arguments; only
    their shapes and dtypes are used. The model's own tensors are never touched: parameters
    and buffers are swapped for fake ones for the step (as torch.func.functional_call does).
    """
    if mode not in MODES:
        raise CaptureError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    if optimizer is not None:
        check_optimizer(optimizer)
    if dispatch not in DISPATCHES:
        raise CaptureError(f"unknown dispatch {dispatch!r}; expected one of {', '.join(DISPATCHES)}")
    if not isinstance(accumulate, int) or accumulate < 1:
        raise CaptureError(f"accumulate must be a positive integer (micro-batches per optimizer step), "
                           f"got {accumulate!r}")
    if not isinstance(example_inputs, (tuple, list, dict)):
        example_inputs = (example_inputs,)
    args, kwargs = (tuple(example_inputs), {}) if not isinstance(example_inputs, dict) else ((), dict(example_inputs))
    names = {id(m): (path, type(m).__name__) for path, m in model.named_modules(remove_duplicate=False)}
    loss_module = DefaultLoss() if loss_fn is None else _LossFn(loss_fn)
    names[id(loss_module)] = ("loss", type(loss_module).__name__ if loss_fn is None else "loss_fn")
    tracker = ModuleOwnerTracker(names, ("", type(model).__name__))
    was_training = {m: m.training for m in model.modules()}
    model.train(mode == "train")
    try:
        fake_mode = FakeTensorMode(allow_non_fake_inputs=True)
        params = {n: _fake_like(fake_mode, p, p.requires_grad and mode == "train")
                  for n, p in model.named_parameters()}
        buffers = {n: _fake_like(fake_mode, b) for n, b in model.named_buffers()}
        fake_args = tree_map_only(torch.Tensor, lambda t: _fake_like(fake_mode, t), args)
        fake_kwargs = tree_map_only(torch.Tensor, lambda t: _fake_like(fake_mode, t), kwargs)
        with fake_mode:
            fake_kwargs = {k: v.build() if isinstance(v, Deferred) else v for k, v in fake_kwargs.items()}
            recorder = _GraphRecorder(tracker)
            for n, t in {**params, **buffers}.items():
                recorder.placeholder(n, t)
            for i, t in enumerate(t for t in tree_leaves((fake_args, fake_kwargs)) if isinstance(t, torch.Tensor)):
                recorder.placeholder(f"input_{i}", t)
            recomputed = recompute and mode == "train"
            blocks = recomputing(model) if recomputed else contextlib.nullcontext()
            kernels = cuda_dispatch() if dispatch == "cuda" else contextlib.nullcontext()
            experts = routed_experts(model, moe_skew)
            with tracker, recorder, blocks, kernels, experts, _quiet_fake_tensor_log(), _no_cyclic_gc():
                replay = BlockReplay(model, names, recorder, tracker) if replay_blocks and not recomputed else None
                with replay or contextlib.nullcontext():
                    _run_step(model, params, buffers, fake_args, fake_kwargs, loss_module, mode, recorder,
                              tracker, names[id(loss_module)], optimizer)
                if replay is not None:
                    replay.verify()
    except ReplayAbort as e:  # a replay check failed: the step again, every block recorded
        log.debug("block replay stopped (%s); capturing every block", e)
        return capture(model, example_inputs, mode, loss_fn, model_name, optimizer, accumulate, recompute,
                       dispatch, moe_skew, replay_blocks=False)
    except CaptureError:
        raise
    except Exception as e:  # the model's own error on these inputs, reported as one line
        first = first_line(e)
        hint = next((h for pattern, h in FAILURE_HINTS if pattern in first), "")
        raise CaptureError(f"running {model_name or type(model).__name__} on inputs ({_describe(example_inputs)}) "
                           f"failed: {type(e).__name__}: {first}{hint}") from e
    finally:
        for m, flag in was_training.items():
            m.training = flag
    first = next((t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)), None)
    if first is None:
        raise CaptureError("example inputs hold no tensor; give at least one input tensor")
    tokens = int(first.shape[1]) if (not first.is_floating_point() and first.dim() == 2) else None
    unique = {id(p): p for p in model.parameters()}.values()
    return CapturedStep(graph=recorder.graph, nodes=tuple(recorder.nodes), mode=mode,
                        batch=int(first.shape[0]) if first.dim() else 1, tokens_per_sample=tokens,
                        parameters=sum(p.numel() for p in unique),
                        trainable_parameters=sum(p.numel() for p in unique if p.requires_grad),
                        model_name=model_name or type(model).__name__,
                        optimizer=optimizer if mode == "train" else None,
                        accumulate=accumulate if mode == "train" else 1, recompute=recompute and mode == "train",
                        extra={"structure": model_structure(model),
                               "module_types": {path: type(m).__name__ for path, m in model.named_modules()},
                               "replayed_blocks": replay.replayed if replay is not None else 0})


# what a model's own shape errors mean for the options the user gave
FAILURE_HINTS = (
    ("Kernel size can't be greater than actual input size", "; the input is smaller than a kernel: give a larger "
                                                            "--image (or --seq)"),
    ("Output size is too small", "; the input is too small for the model's downsampling: give a larger --image"),
    ("Expected more than 1 value per channel when training", "; batch norm in training needs more than one value per "
                                                             "channel: use --batch 2 or more"),
)


class _LossFn(nn.Module):
    """Wraps a user's loss function so its ops are attributed to the module path 'loss'."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, output):
        return self.fn(output)


def _run_step(model, params, buffers, args, kwargs, loss_module, mode, recorder, tracker, loss_owner, optimizer):
    # the fake parameters stay swapped in for the whole step, as torch.func.functional_call swaps
    # them for one call: a recomputed block re-runs its forward during the backward
    with _reparametrize_module(model, {**params, **buffers}, tie_weights=True):
        _run_swapped(model, params, args, kwargs, loss_module, mode, recorder, tracker, loss_owner, optimizer)


def _run_swapped(model, params, args, kwargs, loss_module, mode, recorder, tracker, loss_owner, optimizer):
    if mode == "inference":
        with torch.no_grad():
            model(*args, **kwargs)
        return
    output = model(*args, **kwargs)
    recorder.phase = "loss"
    loss = loss_module(output)
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise CaptureError(f"the loss must be a scalar tensor, got {type(loss).__name__} "
                           f"{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}")
    trainable = [p for p in params.values() if p.requires_grad]
    if not trainable:
        raise CaptureError("train mode needs at least one parameter with requires_grad=True; "
                           "use mode='inference' for a frozen model")
    recorder.phase = "backward"
    tracker.backward_started(loss_owner)
    grads = torch.autograd.grad(loss, trainable, allow_unused=True)
    if optimizer is None:
        return
    updated = [(p, g) for p, g in zip(trainable, grads) if g is not None]
    recorder.phase = "optimizer"
    recorder.owner = ("optimizer", CLASS_NAMES[optimizer])
    with torch.no_grad():
        with recorder.paused():  # the state exists before the step: making it is not part of it
            update = prepare_fused_step(optimizer, [p for p, _ in updated])
        update([g for _, g in updated])
