"""Record a run of identical blocks once and replay the others' ops (Llama's 80 decoder layers).

Twins are three or more consecutive children of an nn.ModuleList / nn.Sequential of one class
whose whole submodule trees are equal: every non-tensor attribute (plain values by type and
value, other objects by identity), no forward/backward hooks, parameters and buffers of equal
shape, stride, dtype and requires_grad. Same code, same attributes, same call inputs (pytree,
tensor metadata, plain values) and same recording state (grad mode, autocast, phase, owner
stack) run the same aten ops; so:

  * the first twin runs and is recorded: the forward template;
  * the last twin runs too: its forward must equal the template (else the capture is redone
    without replay) and its backward, first in autograd order, is the backward template;
  * a middle twin called right after its predecessor on that predecessor's output, with the
    template's call signature, does not run: the template's ops are appended again (module
    paths re-prefixed, fx arguments re-wired to this twin's parameters and inputs), its
    outputs are fresh fake tensors of the template's metadata, and in training an
    autograd.Function appends the backward template's ops when autograd reaches it.

Autograd runs the ready node with the highest sequence number first. A chain whose links are
used by the next twin only (checked on the final graph) therefore runs each twin's backward
whole, between its neighbours', as the replayed Function does; the backward template must be
owned by its twin's modules and leave the module tracker as it found it. Any failed check after
a twin was replayed raises ReplayAbort and capture records the step again without replay.

Example:
    >>> [len(run) for run in twin_runs(llama)]   # 80 layers
    [80]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import fx, nn
from torch.nn.modules import module as nn_module
from torch.utils._pytree import tree_flatten, tree_unflatten

if TYPE_CHECKING:
    from .capture import OpNode

MIN_RUN = 3  # first and last twins run: shorter runs would replay nothing
PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.layout,
         torch.memory_format)


class ReplayAbort(Exception):
    """A replay check failed after twins were replayed: capture the step again without replay."""


# ---- finding twins --------------------------------------------------------------------------

def twin_runs(model: nn.Module) -> list[tuple[nn.Module, ...]]:
    """Runs of >= MIN_RUN consecutive twins (module doc), outermost first; twins' insides are
    not searched."""
    runs: list[tuple[nn.Module, ...]] = []

    def visit(module: nn.Module) -> None:
        kids = list(module.children())
        i = 0
        while i < len(kids):
            j = i + 1
            if isinstance(module, (nn.ModuleList, nn.Sequential)):
                while j < len(kids) and same_tree(kids[i], kids[j]):
                    j += 1
            if j - i >= MIN_RUN:
                runs.append(tuple(kids[i:j]))
                i = j
            else:
                visit(kids[i])
                i += 1

    visit(model)
    return runs


def same_tree(a: nn.Module, b: nn.Module, ignore: frozenset = frozenset()) -> bool:
    """Same class, attributes, hooks (none) and parameter/buffer metadata, recursively;
    `ignore`: attributes of a and b themselves left out (the replay's own `forward`)."""
    if a is b or type(a) is not type(b):
        return False
    va, vb = vars(a), vars(b)
    if va.keys() != vb.keys():
        return False
    for key, x in va.items():
        y = vb[key]
        if key in ignore:
            continue
        if key in ("_parameters", "_buffers"):
            if x.keys() != y.keys() or not all(_same_state(x[n], y[n]) for n in x):
                return False
        elif key == "_modules":
            if x.keys() != y.keys() or not all(
                    (x[n] is None and y[n] is None) or (x[n] is not None and y[n] is not None and same_tree(x[n], y[n]))
                    for n in x):
                return False
        elif "state_dict" in key:  # saving and loading only
            continue
        elif "hook" in key and isinstance(x, dict):
            if x or y:
                return False
        elif not same_value(x, y):
            return False
    return True


def _same_state(x, y) -> bool:
    if x is None or y is None:
        return x is None and y is None
    return (type(x) is type(y) and x.shape == y.shape and x.stride() == y.stride() and x.dtype == y.dtype
            and x.requires_grad == y.requires_grad)


def same_value(x, y) -> bool:
    """Plain values (PLAIN and containers of them) by type and value; anything else by identity."""
    if x is y:
        return True
    if type(x) is not type(y):
        return False
    if isinstance(x, PLAIN):
        return x == y
    if isinstance(x, (tuple, list)):
        return len(x) == len(y) and all(same_value(p, q) for p, q in zip(x, y))
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(same_value(x[k], y[k]) for k in x)
    if isinstance(x, (set, frozenset)):
        return all(isinstance(v, PLAIN) for v in x) and x == y
    return False


# ---- plans: a recorded range with its fx arguments made relative to its call -------------

class Ref(NamedTuple):
    """An fx argument of a plan step: ("in", leaf index), ("state", name in the twin),
    ("local", step index), ("fwd", step of the twin's forward), ("gout", output index)."""

    kind: str
    key: Any


class Plan(NamedTuple):
    steps: tuple  # (target, module path after the twin's, OpNode or None, args, kwargs, args flat)
    results: tuple  # local step index per result tensor (call outputs or input/parameter grads)
    rebinds: tuple  # (Ref("state", name), local step): in-place updates of buffers


def make_plan(nodes: list[fx.Node], ext: dict[fx.Node, Ref], twin_path: str) -> tuple | None:
    """(steps, local index per node) of `nodes`, or None when one reads a node outside `ext`
    and the range, is not a call, or is owned outside the twin."""
    local: dict[fx.Node, Ref] = {}
    steps = []
    prefix = twin_path + "."

    def ref(n: fx.Node) -> Ref:
        return local.get(n) or ext[n]

    for i, node in enumerate(nodes):
        if node.op != "call_function":
            return None
        op = node.meta.get("roofline")
        rel = None
        if op is not None:
            if op.module_path != twin_path and not op.module_path.startswith(prefix):
                return None
            rel = op.module_path[len(twin_path):]
        try:
            args, kwargs = fx.node.map_arg(node.args, ref), fx.node.map_arg(node.kwargs, ref)
        except KeyError:
            return None
        flat = all(type(a) is Ref or not isinstance(a, (tuple, list, dict)) for a in args)
        steps.append((node.target, rel, op, args, kwargs, flat))
        local[node] = Ref("local", i)
    return tuple(steps), local


def _same_steps(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(
        s[0] == t[0] and s[1] == t[1] and s[3] == t[3] and s[4] == t[4]
        and (s[2] is None) == (t[2] is None) and (s[2] is None or _same_op(s[2], t[2])) for s, t in zip(a, b))


def _same_op(a: OpNode, b: OpNode) -> bool:
    return (a.op == b.op and a.phase == b.phase and a.module_type == b.module_type and a.args == b.args
            and a.kwargs == b.kwargs and a.inputs == b.inputs and a.outputs == b.outputs)


def _subst(x, env: dict):
    if isinstance(x, Ref):
        return env[x]
    if isinstance(x, (tuple, list)):  # fx keeps lists as immutable_list
        return tuple(_subst(v, env) for v in x) if isinstance(x, tuple) else [_subst(v, env) for v in x]
    if isinstance(x, dict):
        return {k: _subst(v, env) for k, v in x.items()}
    return x


def _meta(t: torch.Tensor) -> tuple:
    return tuple(t.shape), t.stride(), t.dtype


def _fresh(meta: tuple, requires_grad: bool = False) -> torch.Tensor:
    t = torch.empty_strided(meta[0], meta[1], dtype=meta[2], device="cpu")
    return t.requires_grad_(True) if requires_grad else t


# ---- one twin call -------------------------------------------------------------------------

class _Call:
    """A twin's call: its signature, input and state nodes, and what its forward recorded."""

    def __init__(self, twin_index: int, path: str, leaves: list, state: dict[str, torch.Tensor], rec):
        self.index, self.path = twin_index, path
        self.leaves, self.state = leaves, state
        self.in_nodes = [rec.node_of(t) if isinstance(t, torch.Tensor) else None for t in leaves]
        self.state_nodes = {n: rec.node_of(t) for n, t in state.items()}
        self.grad_in = [i for i, t in enumerate(leaves) if isinstance(t, torch.Tensor) and t.requires_grad]
        self.fwd_nodes: list[fx.Node] = []
        self.out_nodes: list[fx.Node | None] = []  # the nodes of its output tensors

    def ext(self) -> dict[fx.Node, Ref]:
        ext = {n: Ref("state", name) for name, n in self.state_nodes.items() if n is not None}
        ext.update({n: Ref("in", i) for i, n in enumerate(self.in_nodes) if n is not None})
        return ext

    def env(self) -> dict[Ref, fx.Node]:
        env = {Ref("state", name): n for name, n in self.state_nodes.items()}
        env.update({Ref("in", i): n for i, n in enumerate(self.in_nodes)})
        return env


class _Template(NamedTuple):
    signature: tuple
    plan: Plan
    out_leaves: tuple  # per output leaf: ("T", meta, requires_grad) or ("V", value)
    out_spec: Any


class _Run:
    """The replay state of one run of twins."""

    def __init__(self, twins: tuple[nn.Module, ...], paths: list[str]):
        self.twins, self.paths = twins, paths
        self.index_of = {id(t): i for i, t in enumerate(twins)}
        self.expected = 0  # the twin whose call comes next in order
        self.end_count = -1  # recorded nodes when the previous twin's call ended
        self.prev_out: list = []
        self.template: _Template | None = None
        self.calls: list[_Call] = []  # every twin's call, in order
        self.replayed: list[_Call] = []
        self.backward: Plan | None = None  # the last twin's backward, once autograd ran it
        self.gout_meta: tuple = ()
        self.grad_metas: tuple = ()
        self.broken = ""  # why replay is no longer exact ("" while it is)
        self.disordered = False  # a twin was called out of order or twice: each runs as it is


class BlockReplay:
    """Context manager: while open, middle twins of `model`'s runs are replayed (module doc)."""

    def __init__(self, model: nn.Module, names: dict[int, tuple[str, str]], recorder, tracker):
        self._rec, self._tracker = recorder, tracker
        self._runs: list[_Run] = []
        uses: dict[int, int] = {}  # parameters and buffers shared by several modules count several times
        for t in _state_tensors(model):
            uses[id(t)] = uses.get(id(t), 0) + 1
        for twins in twin_runs(model):
            paths = [names.get(id(t), ("?",))[0] for t in twins]
            if all(_owns_subtree(t, p, names) and _owns_state(t, uses) for t, p in zip(twins, paths)):
                self._runs.append(_Run(twins, paths))
        self._hooks: list = []

    def __enter__(self):
        # hooks other than the module tracker's would run differently for skipped twins
        if (len(nn_module._global_forward_pre_hooks) != 1 or len(nn_module._global_forward_hooks) != 1
                or nn_module._global_backward_hooks or nn_module._global_backward_pre_hooks):
            self._runs = []
        for run in self._runs:
            for twin in run.twins:
                twin.forward = self._wrap(run, twin, twin.forward)
        return self

    def __exit__(self, *exc):
        for run in self._runs:
            for twin in run.twins:
                del twin.forward  # the instance attribute: the class's forward is back
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        self._rec.binds = None  # a template backward that never ended

    @property
    def replayed(self) -> int:
        return sum(len(run.replayed) for run in self._runs)

    # -- forward --

    def _wrap(self, run: _Run, twin: nn.Module, forward):
        def call(*args, **kwargs):
            return self._call(run, run.index_of[id(twin)], forward, args, kwargs)
        return call

    def _signature(self, run: _Run, i: int, leaves: list, spec) -> tuple | None:
        key = []
        for x in leaves:
            if isinstance(x, torch.Tensor):
                if x.__dict__.get("_roofline_from") is not None:
                    return None
                key.append((_meta(x), x.requires_grad, x.storage_offset(), x._base is not None))
            elif isinstance(x, PLAIN):
                key.append((type(x), x))
            else:
                return None
        rec, active = self._rec, self._tracker._active
        if not active or active[-1][0] != run.paths[i]:
            return None
        return (spec, tuple(key), torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
                torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda"),
                rec.phase, rec.owner, tuple(active[:-1]))

    def _call(self, run: _Run, i: int, forward, args, kwargs):
        rec, t = self._rec, run.template
        leaves, spec = tree_flatten((args, kwargs))
        in_order = i == run.expected and (i == 0 or len(rec.fx_nodes) == run.end_count)
        chained = i > 0 and _chained(leaves, run.prev_out)
        if not (in_order and (i == 0 or chained)):
            if run.replayed:
                raise ReplayAbort(f"{run.paths[i]} called out of order after twins were replayed")
            run.template, run.disordered = None, True  # no replay from here on
            t = None
        signature = self._signature(run, i, leaves, spec)
        bound = all(rec.node_of(x) is not None for x in leaves if isinstance(x, torch.Tensor))
        if (0 < i < len(run.twins) - 1 and t is not None and signature == t.signature and bound
                and not run.broken and rec.innermost()):
            out, call = self._replay(run, i, leaves)
        else:
            out, call = self._run(run, i, forward, args, kwargs, leaves, signature)
        run.expected, run.end_count = i + 1, len(rec.fx_nodes)
        run.prev_out = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]
        call.out_nodes = [rec.node_of(x) for x in run.prev_out]
        run.calls.append(call)
        return out

    def _state(self, run: _Run, i: int) -> dict[str, torch.Tensor]:
        twin = run.twins[i]
        state = dict(twin.named_parameters(remove_duplicate=False))
        state.update(twin.named_buffers(remove_duplicate=False))
        return state

    def _run(self, run: _Run, i: int, forward, args, kwargs, leaves, signature):
        """Run twin i for real; record the template (first twin) or check it against the last."""
        rec = self._rec
        last = i == len(run.twins) - 1
        call = _Call(i, run.paths[i], leaves, self._state(run, i), rec)
        start, rec.binds = len(rec.fx_nodes), []
        try:
            out = forward(*args, **kwargs)
        finally:
            binds, rec.binds = rec.binds, None
        call.fwd_nodes = rec.fx_nodes[start:]
        if not (i == 0 or last) or signature is None:
            if last and run.replayed:
                raise ReplayAbort(f"{run.paths[i]}: its call differs from the template's")
            return out, call
        template = self._template(run, call, out, binds, signature)
        if i == 0:
            # a twin that changed its own attributes while running is no template
            ok = template is not None and same_tree(run.twins[0], run.twins[1], frozenset({"forward"}))
            run.template = template if ok and not run.disordered else None
        elif run.template is not None and template is not None and template.signature == run.template.signature \
                and _same_steps(template.plan.steps, run.template.plan.steps) \
                and template.plan.rebinds == run.template.plan.rebinds \
                and template.out_leaves == run.template.out_leaves:
            if any(x[0] == "T" and x[2] for x in template.out_leaves):
                self._watch_backward(run, call, out)
        elif run.replayed:
            raise ReplayAbort(f"{run.paths[i]} recorded other ops than {run.paths[0]}")
        return out, call

    def _template(self, run: _Run, call: _Call, out, binds, signature) -> _Template | None:
        made = make_plan(call.fwd_nodes, call.ext(), call.path)
        if made is None:
            return None
        steps, local = made
        state_ids = {id(t): n for n, t in call.state.items()}
        input_ids = {id(t) for t in call.leaves if isinstance(t, torch.Tensor)}
        rebinds = []
        for t, node in binds:
            if id(t) in input_ids or (id(t) in state_ids and t.requires_grad):
                return None  # an input or a parameter changed in place
            if id(t) in state_ids:
                rebinds.append((Ref("state", state_ids[id(t)]), local[node].key))
        out_leaves, out_spec = tree_flatten(out)
        tensors = [x for x in out_leaves if isinstance(x, torch.Tensor)]
        if len({id(x) for x in tensors}) != len(tensors):
            return None  # one tensor returned twice: fresh outputs would be two
        outs, results = [], []
        for x in out_leaves:
            if isinstance(x, torch.Tensor):
                node = self._rec.node_of(x)
                if node not in local or x._base is not None or x.storage_offset() or vars(x).get("_roofline_from"):
                    return None
                outs.append(("T", _meta(x), x.requires_grad))
                results.append(local[node].key)
            elif isinstance(x, PLAIN):
                outs.append(("V", x))
            else:
                return None
        grads = [x for x in outs if x[0] == "T" and x[2]]
        if len(grads) > 1 or (grads and len(call.grad_in) != 1):
            return None  # a chain: one tensor in, one out with gradients
        return _Template(signature, Plan(steps, tuple(results), tuple(rebinds)), tuple(outs), out_spec)

    def _replay(self, run: _Run, i: int, leaves):
        rec, t = self._rec, run.template
        call = _Call(i, run.paths[i], leaves, self._state(run, i), rec)
        call.fwd_nodes = self._emit(t.plan.steps, call.env(), call.path)
        for ref, step in t.plan.rebinds:
            rec.bind(call.state[ref.key], call.fwd_nodes[step])
        run.replayed.append(call)
        grad_args = [leaves[j] for j in call.grad_in] + [call.state[n] for n in self._trainable(call)]
        metas = [x for x in t.out_leaves if x[0] == "T"]
        with rec.paused():  # fresh outputs: not ops of the step
            if torch.is_grad_enabled() and any(m[2] for m in metas):
                outs = list(_Replayed.apply(self, run, call, metas, *grad_args))
            else:
                outs = [_fresh(m[1]) for m in metas]
        for tensor, step in zip(outs, t.plan.results):
            rec.bind(tensor, call.fwd_nodes[step])
        it = iter(outs)
        return tree_unflatten([next(it) if x[0] == "T" else x[1] for x in t.out_leaves], t.out_spec), call

    @staticmethod
    def _trainable(call: _Call) -> list[str]:
        return [n for n, p in call.state.items() if p.requires_grad]

    def _emit(self, steps: tuple, env: dict, path: str) -> list[fx.Node]:
        rec, made = self._rec, []
        env = dict(env)
        for target, rel, op, args, kwargs, flat in steps:
            args = tuple([env[a] if type(a) is Ref else a for a in args]) if flat else _subst(args, env)
            node = rec.add(target, args, _subst(kwargs, env) if kwargs else kwargs,
                           None if op is None else type(op)(op.op, op.phase, path + rel, op.module_type, op.args,
                                                          op.kwargs, op.inputs, op.outputs))
            env[Ref("local", len(made))] = node
            made.append(node)
        return made

    # -- backward --

    def _watch_backward(self, run: _Run, call: _Call, out) -> None:
        """Hooks that record the last twin's backward (the template): from its output's gradient
        to its input's; parameters' gradients are caught where autograd.grad captures them."""
        rec = self._rec
        (out_t,) = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor) and x.requires_grad]
        (in_t,) = [call.leaves[j] for j in call.grad_in]
        trainable = self._trainable(call)
        seen: dict[str, Any] = {"grads": {}}

        def started(grad):
            if rec.binds is not None:
                run.broken = "backward ranges overlap"
                return
            seen.update(gout=grad, start=len(rec.fx_nodes))
            rec.binds = []

        def param_grad(name):
            return lambda grad: seen["grads"].__setitem__(name, grad)

        def ended(grad):
            if "start" not in seen:
                run.broken = "backward ended before it started"
                return
            binds, rec.binds = rec.binds, None
            seen["input_grad"] = grad
            run.backward = self._backward_plan(run, call, seen, binds, trainable)

        self._hooks.append(out_t.register_hook(started))
        self._hooks.append(in_t.register_hook(ended))
        self._hooks += [call.state[n].register_hook(param_grad(n)) for n in trainable]

    def _backward_plan(self, run: _Run, call: _Call, seen: dict, binds, trainable) -> Plan | None:
        rec = self._rec
        nodes = rec.fx_nodes[seen["start"]:]
        gout_node = rec.node_of(seen["gout"])
        ext = call.ext()
        ext.update({n: Ref("fwd", k) for k, n in enumerate(call.fwd_nodes)})
        if gout_node is None or gout_node in ext:
            run.broken = "the template's output gradient has no node of its own"
            return None
        ext[gout_node] = Ref("gout", 0)
        made = make_plan(nodes, ext, call.path)
        if made is None or any(s[2] is not None and s[2].phase != "backward" for s in made[0]):
            run.broken = "the template's backward reads or runs outside its twin"
            return None
        if any(p == call.path or p.startswith(call.path + ".") for p, _ in self._tracker._active):
            # a submodule left active would own later ops; a replayed twin's never enter
            run.broken = "the template's backward leaves its modules active in the module tracker"
            return None
        steps, local = made
        outside = {id(t) for t in call.leaves if isinstance(t, torch.Tensor)} | {id(t) for t in call.state.values()}
        if any(id(t) in outside or node not in local for t, node in binds):
            run.broken = "the template's backward changes a tensor in place"
            return None
        results, metas = [], []
        for name, g in [("its input", seen["input_grad"]), *((n, seen["grads"].get(n)) for n in trainable)]:
            node = None if g is None else rec.node_of(g)
            if g is not None and node not in local:
                run.broken = f"the gradient of {name} is not made in the template's backward"
                return None
            results.append(None if g is None else local[node].key)
            metas.append(None if g is None else _meta(g))
        run.gout_meta, run.grad_metas = _meta(seen["gout"]), tuple(metas)
        return Plan(steps, tuple(results), ())

    def replay_backward(self, run: _Run, call: _Call, grads: tuple) -> list:
        """Append the backward template's ops for `call`; its gradients, as the Function returns them."""
        rec, plan = self._rec, run.backward
        if plan is None or run.broken:
            raise ReplayAbort(f"{call.path}: no backward template ({run.broken or 'the last twin has not run'})")
        (g,) = grads
        gnode = None if g is None else rec.node_of(g)
        if gnode is None or _meta(g) != run.gout_meta or rec.phase != "backward" or not rec.innermost():
            raise ReplayAbort(f"{call.path}: its output gradient differs from the template's")
        env = call.env()
        env.update({Ref("fwd", k): n for k, n in enumerate(call.fwd_nodes)})
        env[Ref("gout", 0)] = gnode
        made = self._emit(plan.steps, env, call.path)
        with rec.paused():
            out = [None if step is None else _fresh(meta) for step, meta in zip(plan.results, run.grad_metas)]
        for t, step in zip(out, plan.results):
            if t is not None:
                rec.bind(t, made[step])
        return out

    # -- after the step --

    def verify(self) -> None:
        """The final graph checks of the module doc; raises ReplayAbort when one fails."""
        for run in self._runs:
            if not run.replayed:
                continue
            if run.broken:
                raise ReplayAbort(run.broken)
            first, last = run.calls[0], run.calls[-1]
            for call in (first, last):  # no op outside the twin reads a tensor made inside it
                outs = set(call.out_nodes)
                for node in call.fwd_nodes:
                    if node not in outs and any(not _owned(u, call.path) for u in node.users):
                        raise ReplayAbort(f"{call.path}: a tensor made inside it is read outside")
            backward = any(x[0] == "T" and x[2] for x in run.template.out_leaves)
            for a, b in zip(run.calls, run.calls[1:]) if backward else ():  # a chain: outputs read by the next twin only
                # (a's own backward may read it: a ReLU's saved output)
                if any(n is None or not all(_owned(u, b.path) or _owned(u, a.path) for u in n.users)
                       for n in a.out_nodes):
                    raise ReplayAbort(f"{a.path}: its output is read outside {b.path}")


class _Replayed(torch.autograd.Function):
    """A replayed twin in autograd: fresh outputs forward, the backward template backward."""

    @staticmethod
    def forward(ctx, replay: BlockReplay, run: _Run, call: _Call, metas: list, *grad_args):
        ctx.replay, ctx.run, ctx.call = replay, run, call
        outs = [_fresh(m[1]) for m in metas]
        ctx.mark_non_differentiable(*[t for t, m in zip(outs, metas) if not m[2]])
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        differentiable = [g for g, m in zip(grads, [x for x in ctx.run.template.out_leaves if x[0] == "T"]) if m[2]]
        return (None, None, None, None, *ctx.replay.replay_backward(ctx.run, ctx.call, tuple(differentiable)))


def _chained(leaves: list, prev_out: list) -> bool:
    """The call's one input that needs a gradient is the previous twin's one output that does
    (or neither has any)."""
    grad = [x for x in leaves if isinstance(x, torch.Tensor) and x.requires_grad]
    prev = [t for t in prev_out if t.requires_grad]
    return (not grad and not prev) or (len(grad) == 1 and len(prev) == 1 and grad[0] is prev[0])


def _owned(node: fx.Node, path: str) -> bool:
    while node.op == "call_function" and "roofline" not in node.meta:  # a getitem: its call's owner
        node = node.args[0]
    op = node.meta.get("roofline")
    return op is not None and (op.module_path == path or op.module_path.startswith(path + "."))


def _owns_state(twin: nn.Module, uses: dict[int, int]) -> bool:
    """No parameter or buffer of the twin is shared (their gradients would add up across modules)."""
    return all(uses[id(t)] == 1 for t in _state_tensors(twin))


def _state_tensors(module: nn.Module) -> list[torch.Tensor]:
    return [t for _, t in [*module.named_parameters(remove_duplicate=False),
                           *module.named_buffers(remove_duplicate=False)]]


def _owns_subtree(twin: nn.Module, path: str, names: dict) -> bool:
    """Every module of the twin is named under its path (none shared with another twin)."""
    return all(names.get(id(m), ("",))[0] == (f"{path}.{rel}" if rel else path)
               for rel, m in twin.named_modules(remove_duplicate=False))
