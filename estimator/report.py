"""The Report: a captured step costed on one chip at one precision, with its aggregates.

Phases: forward totals include the loss (it runs in the forward pass); backward is autograd's
work; the optimizer's update has its own totals and, in rows, sits in the backward columns of
the row "optimizer". With gradient accumulation (step.accumulate = N) the forward and backward
run N times per step (rows and totals count all N) and the step trains N x batch samples.
Aggregation keys: "layer" (module path, cut to `depth` components), "type" (module
type), "op" (aten op). Utilization = model FLOPs / (step time x the chip's matrix peak at the
precision), the MFU convention.

Example:
    >>> report = estimate(model, inputs, hardware="a100-80gb-sxm", precision="amp-bf16")
    >>> report.totals()["step_time_s"], report.rows("layer", depth=2)[0].name
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from .capture import CapturedStep, OpNode
from .costs import Cost
from .hardware import Hardware
from .precision import Precision, get_precision
from .device_model import convolutions_on_tf32
from .execution import run_step
from .foreach_optimizer import PASSES
from .roofline import NodeTime, step_costs
from .timeline import Timeline

GROUPINGS = ("layer", "type", "op")
PARTS = ("forward", "backward", "optimizer")  # the loss is summed with the forward


@dataclass(frozen=True)
class Row:
    """One aggregated line of the table."""

    name: str
    type: str
    forward_flops: int
    backward_flops: int
    forward_bytes: int
    backward_bytes: int
    forward_time_s: float
    backward_time_s: float
    bound: str  # the bound that carries most of the row's time
    nodes: int
    roofline_time_s: float  # the datasheet bound of the row, forward and backward

    @property
    def bytes(self) -> int:
        return self.forward_bytes + self.backward_bytes

    @property
    def time_s(self) -> float:
        return self.forward_time_s + self.backward_time_s

    @property
    def intensity(self) -> float:
        """FLOP per byte moved, forward and backward together."""
        return (self.forward_flops + self.backward_flops) / self.bytes if self.bytes else 0.0


@dataclass(frozen=True)
class Report:
    step: CapturedStep
    hardware: Hardware
    precision: Precision
    costs: tuple[Cost, ...]
    times: tuple[NodeTime, ...]
    timeline: Timeline
    execution: str = "eager"

    @property
    def nodes(self) -> tuple[OpNode, ...]:
        return self.step.nodes

    def recost(self, hardware: Hardware | None = None, precision: str | Precision | None = None,
               execution: str | None = None) -> "Report":
        """The same captured step on another chip, precision and/or execution mode, without tracing again."""
        return evaluate(self.step, hardware or self.hardware, precision or self.precision, execution or self.execution)

    # ---- totals -------------------------------------------------------------------------
    def _repeats(self, node: OpNode) -> int:
        """How many times the node runs per step: the micro-batches, except the optimizer's once."""
        return 1 if node.phase == "optimizer" else self.step.accumulate

    def _part_sums(self) -> dict[str, tuple]:
        """Per part of the step ("forward" with the loss, "backward", "optimizer"): FLOPs, useful
        FLOPs, bytes, time and roofline time per step, summed in node order. The cost sums do not
        depend on the chip: they are kept in step.extra for these costs (a re-cost re-uses them)."""
        parts = self._node_parts()
        kept = self.step.extra.get("part_cost_sums")
        if kept is None or kept[0] is not self.costs or kept[1] is not parts:
            flops, useful, nbytes = [0] * 3, [0] * 3, [0] * 3
            for (p, n), cost in zip(parts, self.costs):
                flops[p] += n * cost.flops
                useful[p] += n * cost.useful_flops
                nbytes[p] += n * cost.bytes
            kept = (self.costs, parts, (flops, useful, nbytes))
            self.step.extra["part_cost_sums"] = kept
        flops, useful, nbytes = kept[2]
        time, roofline = [0.0] * 3, [0.0] * 3
        for (p, n), t in zip(parts, self.times):
            time[p] += n * t.total_s
            roofline[p] += n * t.roofline_s
        return {part: (flops[p], useful[p], nbytes[p], time[p], roofline[p]) for p, part in enumerate(PARTS)}

    def _node_parts(self) -> list[tuple[int, int]]:
        """Per node: the index in PARTS of its part (the loss is the forward's) and how many times
        it runs per step (_repeats). Kept in step.extra per micro-batch count (a step re-made with
        another `accumulate` shares its extra)."""
        key = ("node_parts", self.step.accumulate)
        if key not in self.step.extra:
            self.step.extra[key] = [(PARTS.index("forward" if n.phase == "loss" else n.phase), self._repeats(n))
                                    for n in self.step.nodes]
        return self.step.extra[key]

    def totals(self) -> dict:
        """Step totals. `*_time_s` is the achievable estimate (the prediction);
        `roofline_step_time_s` the datasheet bound no chip can beat."""
        parts = self._part_sums()
        f_flops, f_useful, f_bytes, f_time, f_roof = parts["forward"]
        b_flops, b_useful, b_bytes, b_time, b_roof = parts["backward"]
        o_flops, o_useful, o_bytes, o_time, o_roof = parts["optimizer"]
        step_time = f_time + b_time + o_time + self.timeline.sync_s
        model_flops = f_useful + b_useful + o_useful
        peak = self.hardware.matrix_peak(self.precision)
        samples = self.step.batch * self.step.accumulate
        samples_per_s = samples / step_time if step_time else 0.0
        tokens = self.step.tokens_per_sample
        return {
            "parameters": self.step.parameters,
            "trainable_parameters": self.step.trainable_parameters,
            "optimizer": self.step.optimizer, "accumulate": self.step.accumulate, "samples_per_step": samples,
            "forward_flops": f_flops, "backward_flops": b_flops, "optimizer_flops": o_flops,
            "step_flops": f_flops + b_flops + o_flops, "model_flops": model_flops,
            "forward_bytes": f_bytes, "backward_bytes": b_bytes, "optimizer_bytes": o_bytes,
            "step_bytes": f_bytes + b_bytes + o_bytes,
            "forward_time_s": f_time, "backward_time_s": b_time, "optimizer_time_s": o_time,
            "step_time_s": step_time, "roofline_step_time_s": f_roof + b_roof + o_roof,
            "throughput_samples_per_s": samples_per_s,
            "throughput_tokens_per_s": samples_per_s * tokens if tokens else None,
            "utilization": model_flops / (step_time * peak) if step_time else 0.0,
            "execution": self.execution, "step_bound": self.step_bound(),
            "timeline": self.timeline.to_dict(), "notes": self.notes(),
        }

    def step_bound(self) -> str:
        """What carries most of the step: host (the device waits for the host more than half the
        step), else compute or memory by which carries more of the device's time."""
        if self.timeline.host_bound_s + self.timeline.sync_s > 0.5 * self.timeline.step_s:
            return "host"
        compute = sum(t.compute_s for t in self.times if t.compute_s >= t.memory_s)
        memory = sum(t.memory_s for t in self.times if t.memory_s > t.compute_s)
        return "compute" if compute >= memory else "memory"

    def notes(self) -> list[str]:
        """How the precision and execution ran, where it is not what the name says."""
        out = []
        if convolutions_on_tf32(self.hardware, self.precision):
            out.append("fp32 as PyTorch runs it by default: convolutions on TF32 (cudnn.allow_tf32), matmuls in fp32")
        if self.execution == "eager" and self.hardware.kind != "cpu" and self.step.optimizer in PASSES:
            elements = sum(p.numel for n in self.step.nodes if n.phase == "optimizer" for p in n.args[0])
            passes = PASSES[self.step.optimizer]
            per_element = sum(p.read + p.written for p in passes) * self.precision.float_bytes("optimizer")
            out.append(f"optimizer time as eager torch.optim runs it on a GPU: foreach, {len(passes)} passes moving "
                       f"{per_element * elements / 1e9:,.3f} GB; its FLOPs and bytes above count the fused kernel")
        return out

    # ---- aggregation --------------------------------------------------------------------
    def rows(self, by: str = "layer", depth: int | None = None) -> list[Row]:
        """Aggregated rows, largest step time first. `depth` cuts module paths (layer only)."""
        if by not in GROUPINGS:
            raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
        types = self._module_types()
        acc: dict[str, dict] = defaultdict(lambda: {"ff": 0, "bf": 0, "fb": 0, "bb": 0, "ft": 0.0, "bt": 0.0,
                                                    "bound": Counter(), "n": 0, "type": "", "roof": 0.0})
        for node, cost, t in zip(self.step.nodes, self.costs, self.times):
            if cost.op_class == "free":
                continue
            key, mtype = self._key(node, by, depth, types)
            a = acc[key]
            a["type"] = mtype
            side = "b" if node.phase in ("backward", "optimizer") else "f"
            n = self._repeats(node)
            a[side + "f"] += n * cost.flops
            a[side + "b"] += n * cost.bytes
            a[side + "t"] += n * t.total_s
            a["bound"][t.bound] += n * t.total_s
            a["n"] += n
            a["roof"] += n * t.roofline_s
        rows = [Row(k, a["type"], a["ff"], a["bf"], a["fb"], a["bb"], a["ft"], a["bt"],
                    a["bound"].most_common(1)[0][0], a["n"], a["roof"]) for k, a in acc.items()]
        return sorted(rows, key=lambda r: -r.time_s)

    def _module_types(self) -> dict[str, str]:
        """Module path -> class name: every module of the model (a container such as a
        Sequential owns no op itself but heads the rows cut to its depth), else what the nodes say."""
        types = dict(self.step.extra.get("module_types", {}))
        for node in self.step.nodes:
            types.setdefault(node.module_path, node.module_type)
        return types

    @staticmethod
    def _key(node: OpNode, by: str, depth: int | None, types: dict[str, str]) -> tuple[str, str]:
        if by == "op":
            return node.name, node.op.overloadpacket.__name__ if hasattr(node.op, "overloadpacket") else ""
        if by == "type":
            return node.module_type, node.module_type
        path = node.module_path
        if depth is not None and path and path not in ("loss", "optimizer"):
            path = ".".join(path.split(".")[:depth])
        return (path or "(model)"), types.get(path, node.module_type)

    def unsupported(self) -> list[dict]:
        """Ops without a rule: op, count, share of nodes, share of bytes (their traffic is charged)."""
        counts: Counter = Counter()
        nbytes: Counter = Counter()
        for node, cost in zip(self.step.nodes, self.costs):
            if cost.op_class == "unsupported":
                counts[node.name] += 1
                nbytes[node.name] += cost.bytes
        total_bytes = sum(c.bytes for c in self.costs) or 1
        return [{"op": op, "count": n, "node_share": n / len(self.step.nodes),
                 "bytes_share": nbytes[op] / total_bytes} for op, n in counts.most_common()]

    def to_dict(self, by: str = "layer", depth: int | None = None) -> dict:
        """Everything the JSON output holds (SI units: FLOPs, bytes, seconds)."""
        return {
            "model": self.step.model_name, "hardware": self.hardware.id, "precision": self.precision.name,
            "mode": self.step.mode, "batch": self.step.batch, "tokens_per_sample": self.step.tokens_per_sample,
            "totals": self.totals(),
            "layers": [{"name": r.name, "type": r.type, "forward_flops": r.forward_flops,
                        "backward_flops": r.backward_flops, "bytes": r.bytes, "forward_bytes": r.forward_bytes,
                        "backward_bytes": r.backward_bytes, "forward_time_s": r.forward_time_s,
                        "backward_time_s": r.backward_time_s, "roofline_time_s": r.roofline_time_s,
                        "intensity_flops_per_byte": r.intensity,
                        "bound": r.bound} for r in self.rows(by, depth)],
            "grouped_by": by,
            "complete": not self.unsupported(),  # False: some ops have no cost rule (their FLOPs count 0)
            "unsupported": self.unsupported(),
        }

    # ---- notebook (estimator.notebook_display) ----------------------------------------------
    def to_pandas(self, by: str = "layer", depth: int | None = None):
        """rows(by, depth) as a pandas DataFrame: raw FLOPs, bytes and seconds, units in the column names."""
        from .notebook_display import dataframe
        return dataframe(self._records(by, depth))

    def _records(self, by: str = "layer", depth: int | None = None) -> list[dict]:
        return [{"name": r.name, "type": r.type, "forward_flops": r.forward_flops, "backward_flops": r.backward_flops,
                 "forward_bytes": r.forward_bytes, "backward_bytes": r.backward_bytes, "bytes": r.bytes,
                 "forward_time_s": r.forward_time_s, "backward_time_s": r.backward_time_s, "time_s": r.time_s,
                 "roofline_time_s": r.roofline_time_s, "intensity_flops_per_byte": r.intensity, "bound": r.bound,
                 "nodes": r.nodes} for r in self.rows(by, depth)]

    def _repr_html_(self) -> str:
        from .notebook_display import html_table, seconds, si
        t = self.totals()
        title = (f"{self.step.model_name} · {self.hardware.id} · {self.precision.name} · {self.step.mode} · "
                 f"batch {self.step.batch}")
        line = (f"step {seconds(t['step_time_s'])} ({t['step_bound']}-bound), {t['throughput_samples_per_s']:,.1f} "
                f"samples/s, utilization {t['utilization']:.1%}, {si(t['step_flops'], 'FLOP')}, "
                f"{si(t['step_bytes'], 'B')} moved; layers by time:")
        return html_table(self._records(), title, (line,), limit=15)


def evaluate(step: CapturedStep, hardware: Hardware, precision: str | Precision, execution: str = "eager") -> Report:
    """Cost a captured step on a chip at a precision and predict its time under an execution mode
    (estimator.execution; the cost rules run once per precision)."""
    precision = get_precision(precision) if isinstance(precision, str) else precision
    hardware.matrix_peak(precision)  # a precision the chip lacks fails here, clearly
    costs = step_costs(step, precision)
    times, timeline = run_step(step, costs, hardware, precision, execution)
    return Report(step, hardware, precision, costs, times, timeline, execution)
