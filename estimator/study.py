"""A study: many models x batch sizes x chips, each step captured once, for plots and reports.

A captured step does not depend on the chip, so `Study.step` captures each (model, batch,
mode) once and every chip re-costs it (`Report.recost` path, no tracing). Inference steps at
a third or later batch are derived from the captures at the two smallest batches where those
two fit (estimator.batch_scaling: the same ops, every size a power of the batch), which is
what capturing them gives; where they do not fit, every batch is captured. Points are the
inference forward pass at each batch ("latency" = one forward of `batch` samples);
`phase_splits` are training steps at `train_batch` (forward incl. the loss, backward, the
optimizer's update apart). Measured times, when asked for, come from this machine
(`estimator.measure`) and belong to the calibrated `local` chip.

Example:
    >>> study = Study(["resnet18", "vit_b_16"], [load_hardware("a100-80gb-sxm")], batches=[1, 64])
    >>> [(p.model, p.batch, p.predicted_s) for p in study.points()]
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Callable

import roofline_zoo

from .batch_scaling import BatchScaling, fit
from .capture import CapturedStep, capture
from .compare import spearman
from .device_dispatch import dispatch_for
from .errors import RooflineError
from .hardware import Hardware
from .memory import step_memory
from .model_source import load_model
from .precision import Precision, get_precision
from .report import Report, evaluate
from .step_cache import cached_capture, capture_options, capture_settings, model_identity

Progress = Callable[[str], None]  # called once per unit of work, with what was just done


@dataclass(frozen=True)
class StudyPoint:
    """One model's inference forward pass at one batch size on one chip (SI units)."""

    model: str
    family: str
    batch: int
    chip: str  # hardware id
    chip_kind: str  # gpu, cpu, asic, soc
    precision: str
    parameters: int
    flops: int  # every op of the forward pass, 1 multiply-accumulate = 2 FLOPs
    bytes: int  # bytes the forward's ops read and write
    memory_bytes: int  # predicted peak memory of the step (weights, activations, inputs)
    parameters_bytes: int
    predicted_s: float  # the estimate (achievable roofs, overheads)
    roofline_s: float  # the datasheet bound: no chip beats it
    memory_bound_share: float  # share of predicted time in memory-bound ops
    overhead_share: float  # share of predicted time in ops bound by launch overhead or by the host
    ridge_flops_per_byte: float  # the chip's ridge point at the precision
    peak_flops_per_s: float  # the chip's matrix peak at the precision
    measured_s: float | None = None  # median measured latency on this machine (chip "local" only)
    measured_note: str = ""  # why a measurement asked for is missing (e.g. does not fit in memory)

    @property
    def intensity(self) -> float:
        """FLOP per byte of the whole forward pass."""
        return self.flops / self.bytes if self.bytes else 0.0

    @property
    def predicted_flops_per_s(self) -> float:
        return self.flops / self.predicted_s if self.predicted_s else 0.0

    @property
    def measured_flops_per_s(self) -> float | None:
        return self.flops / self.measured_s if self.measured_s else None

    @property
    def predicted_samples_per_s(self) -> float:
        return self.batch / self.predicted_s if self.predicted_s else 0.0

    @property
    def measured_samples_per_s(self) -> float | None:
        return self.batch / self.measured_s if self.measured_s else None

    @property
    def bound(self) -> str:
        """Which roof the whole pass sits under by the classic test: intensity vs ridge point."""
        return "memory" if self.intensity < self.ridge_flops_per_byte else "compute"

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(intensity_flops_per_byte=self.intensity, bound=self.bound,
                    predicted_flops_per_s=self.predicted_flops_per_s, measured_flops_per_s=self.measured_flops_per_s,
                    predicted_samples_per_s=self.predicted_samples_per_s,
                    measured_samples_per_s=self.measured_samples_per_s)
        return data


@dataclass(frozen=True)
class PhaseSplit:
    """Forward vs backward of one model's training step at one batch on one chip (seed 002, 5.1).

    Forward includes the loss; the optimizer's update is in neither. Times are predicted on
    `chip`; measured ones (this machine, `local` only) are None when not measured."""

    model: str
    batch: int
    chip: str
    forward_flops: int
    backward_flops: int
    forward_s: float
    backward_s: float
    measured_forward_s: float | None = None
    measured_backward_s: float | None = None
    measured_note: str = ""

    @property
    def flops_ratio(self) -> float:
        """Backward FLOPs per forward FLOP (about 2 for networks of matmuls and convolutions)."""
        return self.backward_flops / self.forward_flops if self.forward_flops else math.nan

    @property
    def time_ratio(self) -> float:
        return self.backward_s / self.forward_s if self.forward_s else math.nan

    @property
    def measured_time_ratio(self) -> float | None:
        if self.measured_forward_s and self.measured_backward_s is not None:
            return self.measured_backward_s / self.measured_forward_s
        return None

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(flops_ratio=self.flops_ratio, time_ratio=self.time_ratio,
                    measured_time_ratio=self.measured_time_ratio)
        return data


class Study:
    """Models x batches x chips; captures and reports are cached. Every chip runs at `precision`
    unless `chip_precisions` names another for it (e.g. {"a100-80gb-sxm": "amp-bf16"})."""

    def __init__(self, models: list[str], chips: list[Hardware], batches: list[int], precision: str | Precision = "fp32",
                 train_batch: int = 8, seq: int | None = None, image: int | None = None,
                 chip_precisions: dict[str, str] | None = None, use_cache: bool = True):
        if not models:
            raise RooflineError("a study needs at least one model")
        if not chips:
            raise RooflineError("a study needs at least one chip")
        if not batches or any(b < 1 for b in batches):
            raise RooflineError(f"batch sizes must be positive integers, got {batches}")
        if train_batch < 1:
            raise RooflineError(f"the training batch must be a positive integer, got {train_batch}")
        self.models = list(dict.fromkeys(models))
        self.use_cache = use_cache  # read and write captured steps in the disk cache (estimator.step_cache)
        self.chips = list(chips)
        self.batches = sorted(set(batches))
        default = get_precision(precision) if isinstance(precision, str) else precision
        self.precisions = {chip.id: get_precision((chip_precisions or {}).get(chip.id, default.name))
                           for chip in self.chips}
        for chip in self.chips:
            chip.matrix_peak(self.precisions[chip.id])  # a precision a chip lacks fails here, before any capture
        self.train_batch = train_batch
        self.seq, self.image = seq, image
        self._steps: dict[tuple[str, int, str], CapturedStep] = {}
        self._scalings: dict[str, BatchScaling | None] = {}  # model -> its inference steps' fit (see step)
        self._reports: dict[tuple[str, int, str, str], Report] = {}

    def precision_of(self, chip: Hardware | str) -> Precision:
        return self.precisions[chip if isinstance(chip, str) else chip.id]

    def chip(self, chip_id: str) -> Hardware:
        for chip in self.chips:
            if chip.id == chip_id:
                return chip
        raise RooflineError(f"chip {chip_id!r} is not in this study ({', '.join(c.id for c in self.chips)})")

    def step(self, model: str, batch: int, mode: str = "inference") -> CapturedStep:
        """The step (cached: one capture per model, batch and mode). An inference step at a third
        or later batch of the study is derived from the steps at the two smallest (module doc)."""
        key = (model, batch, mode)
        if key not in self._steps:
            self._steps[key] = self._derived(model, batch, mode) or self._captured(model, batch, mode)
        return self._steps[key]

    def _captured(self, model: str, batch: int, mode: str) -> CapturedStep:
        sizes = self.sizes(model)
        settings = capture_settings(batch, sizes.get("seq"), sizes.get("image"), mode,
                                    dispatch=dispatch_for(chip.kind for chip in self.chips))

        def make() -> CapturedStep:
            net, inputs, name = load_model(model, batch=batch, **sizes)
            return capture(net, inputs, model_name=name, **capture_options(settings))

        return cached_capture(model_identity(model), settings, make, self.use_cache)

    def _derived(self, model: str, batch: int, mode: str) -> CapturedStep | None:
        """The inference step at `batch`, a third or later batch of the study, from the steps at its
        two smallest (estimator.batch_scaling.fit); None for any other batch, for training steps
        and where the two do not fit (the step is then captured)."""
        if mode != "inference" or batch not in self.batches[2:]:
            return None
        if model not in self._scalings:
            self._scalings[model] = fit(*(self.step(model, b, mode) for b in self.batches[:2]))
        scaling = self._scalings[model]
        return scaling.at(batch) if scaling is not None else None

    def sizes(self, model: str) -> dict:
        """The study's seq and image for `model`: a zoo model gets only the one its input takes."""
        entry = roofline_zoo.ZOO.get(model)
        if entry is None:
            return {"seq": self.seq, "image": self.image}
        return {"image": self.image} if entry.input_kind == "image" else {"seq": self.seq}

    def report(self, model: str, batch: int, chip: Hardware, mode: str = "inference") -> Report:
        """The step costed on `chip` (cached)."""
        key = (model, batch, mode, chip.id)
        if key not in self._reports:
            self._reports[key] = evaluate(self.step(model, batch, mode), chip, self.precision_of(chip))
        return self._reports[key]

    def points(self, progress: Progress | None = None) -> list[StudyPoint]:
        """One point per model, batch and chip, in that order."""
        points = []
        for model in self.models:
            for batch in self.batches:
                points += self.batch_points(model, batch)
                if progress:
                    progress(f"{model} batch {batch}")
        return points

    def batch_points(self, model: str, batch: int) -> list[StudyPoint]:
        """The points of `model` at `batch`, one per chip (a unit of `points` a worker can run)."""
        family = roofline_zoo.ZOO[model].family if model in roofline_zoo.ZOO else "user"
        step = self.step(model, batch)
        memory = {p.name: step_memory(step, p) for p in {p.name: p for p in self.precisions.values()}.values()}
        at = {chip.id: memory[self.precision_of(chip).name] for chip in self.chips}
        return [_point(self.report(model, batch, chip), family, at[chip.id].peak_bytes, at[chip.id].parameters_bytes)
                for chip in self.chips]

    def to_pandas(self, points: list[StudyPoint] | None = None):
        """`points` (default: self.points(), captured on first use) as a pandas DataFrame, one row per
        model, batch and chip: StudyPoint.to_dict's raw values (flops, bytes, memory_bytes, predicted_s...)."""
        from .notebook_display import dataframe
        return dataframe([p.to_dict() for p in (self.points() if points is None else points)])

    def _repr_html_(self) -> str:
        from .notebook_display import html_table
        columns = ["model", "batch", "chip", "precision", "flops", "bytes", "intensity_flops_per_byte",
                   "ridge_flops_per_byte", "bound", "predicted_s", "predicted_samples_per_s", "memory_bytes"]
        title = f"Study: {len(self.models)} models x batches {self.batches} x {len(self.chips)} chips (inference)"
        return html_table([p.to_dict() for p in self.points()], title, columns=columns, limit=60)

    def phase_splits(self, progress: Progress | None = None) -> list[PhaseSplit]:
        """Forward vs backward of each model's training step at `train_batch`, on every chip."""
        splits = []
        for model in self.models:
            splits += self.model_phase_splits(model)
            if progress:
                progress(f"{model} training batch {self.train_batch}")
        return splits

    def model_phase_splits(self, model: str) -> list[PhaseSplit]:
        """`model`'s splits, one per chip (a unit of `phase_splits` a worker can run)."""
        splits = []
        for chip in self.chips:
            totals = self.report(model, self.train_batch, chip, mode="train").totals()
            splits.append(PhaseSplit(model, self.train_batch, chip.id, totals["forward_flops"],
                                     totals["backward_flops"], totals["forward_time_s"], totals["backward_time_s"]))
        return splits


def _point(report: Report, family: str, memory_bytes: int, parameters_bytes: int) -> StudyPoint:
    totals = report.totals()
    time_s = totals["step_time_s"]
    memory_s = sum(t.total_s for t in report.times if t.bound == "memory")
    overhead_s = sum(t.total_s for t in report.times if t.bound in ("overhead", "host"))
    hw, precision = report.hardware, report.precision
    return StudyPoint(model=report.step.model_name, family=family, batch=report.step.batch, chip=hw.id,
                      chip_kind=hw.kind, precision=precision.name, parameters=report.step.parameters,
                      flops=totals["step_flops"], bytes=totals["step_bytes"], memory_bytes=memory_bytes,
                      parameters_bytes=parameters_bytes, predicted_s=time_s,
                      roofline_s=totals["roofline_step_time_s"],
                      memory_bound_share=memory_s / time_s if time_s else 0.0,
                      overhead_share=overhead_s / time_s if time_s else 0.0,
                      ridge_flops_per_byte=hw.ridge_point(precision), peak_flops_per_s=hw.matrix_peak(precision))


def with_measurements(points: list[StudyPoint], measured: dict[tuple[str, int], float | str],
                      chip_id: str = "local") -> list[StudyPoint]:
    """Points with `measured[(model, batch)]` filled in on `chip_id`: seconds, or a note saying why not."""
    out = []
    for p in points:
        value = measured.get((p.model, p.batch)) if p.chip == chip_id else None
        if isinstance(value, str):
            p = replace(p, measured_note=value)
        elif value is not None:
            p = replace(p, measured_s=float(value))
        out.append(p)
    return out


@dataclass(frozen=True)
class RankCorrelation:
    """Spearman rank correlations between latency and size measures over (model, batch) pairs."""

    labels: tuple[str, ...]
    matrix: tuple[tuple[float, ...], ...]  # matrix[i][j] = rho(labels[i], labels[j])
    samples: int  # (model, batch) pairs every variable has

    def rho(self, a: str, b: str) -> float:
        return self.matrix[self.labels.index(a)][self.labels.index(b)]


def rank_correlations(points: list[StudyPoint], chips: list[str]) -> RankCorrelation:
    """Spearman matrix of: measured latency (where at least 3 pairs were measured), predicted
    latency on each of `chips`, FLOPs and parameters, over the (model, batch) pairs that have
    all of them (seed 002, 3.3)."""
    by_pair: dict[tuple[str, int], dict[str, float]] = {}
    for p in points:
        values = by_pair.setdefault((p.model, p.batch), {"FLOPs": float(p.flops), "parameters": float(p.parameters)})
        if p.chip in chips:
            values[f"predicted latency {p.chip}"] = p.predicted_s
        if p.measured_s is not None:
            values[f"measured latency {p.chip}"] = p.measured_s
    counts = Counter(k for v in by_pair.values() for k in v if k.startswith("measured"))
    measured = sorted(k for k, n in counts.items() if n >= 3)  # fewer measured pairs cannot be ranked: left out
    labels = tuple(measured + [f"predicted latency {c}" for c in chips] + ["FLOPs", "parameters"])
    rows = [v for v in by_pair.values() if all(k in v for k in labels)]
    if len(rows) < 3:
        raise RooflineError(f"rank correlation needs at least 3 (model, batch) pairs with every value, got "
                            f"{len(rows)}: add models or batch sizes")
    columns = [[r[label] for r in rows] for label in labels]
    matrix = tuple(tuple(spearman(a, b) for b in columns) for a in columns)
    return RankCorrelation(labels, matrix, len(rows))


def measure_points(study: Study, points: list[StudyPoint], chip_id: str = "local", warmup: int = 1, runs: int = 3,
                   max_seconds: float = 120.0, progress: Progress | None = None) -> list[StudyPoint]:
    """`points` with measured latencies on this machine for the points of `chip_id` (the
    calibrated local chip). A configuration is not run, and its point says why, when it is not
    a zoo model, would not fit in free memory, or its predicted time x (warmup + runs) exceeds
    `max_seconds`."""
    from .measure import measure

    chip = study.chip(chip_id)
    results: dict[tuple[str, int], float | str] = {}
    for p in (p for p in points if p.chip == chip_id):
        results[(p.model, p.batch)] = _measure_or_why(
            p.model, p.predicted_s * (warmup + runs), max_seconds,
            lambda p=p: measure(p.model, p.batch, precision=study.precision_of(chip).name, warmup=warmup, runs=runs,
                                hardware=chip, step=study.step(p.model, p.batch), **study.sizes(p.model)).latency_s)
        if progress:
            progress(f"measured {p.model} batch {p.batch}")
    return with_measurements(points, results, chip_id)


def measure_phase_splits(study: Study, splits: list[PhaseSplit], chip_id: str = "local", warmup: int = 1,
                         runs: int = 3, max_seconds: float = 120.0,
                         progress: Progress | None = None) -> list[PhaseSplit]:
    """`splits` with measured forward and backward times for those of `chip_id` (see `measure_points`)."""
    from .measure_phases import measure_phases

    out = []
    for s in splits:
        if s.chip == chip_id:
            result = _measure_or_why(
                s.model, (s.forward_s + s.backward_s) * (warmup + runs), max_seconds,
                lambda s=s: measure_phases(s.model, s.batch, precision=study.precision_of(chip_id).name, warmup=warmup,
                                           runs=runs, step=study.step(s.model, s.batch, "train"),
                                           **study.sizes(s.model)))
            if isinstance(result, str):
                s = replace(s, measured_note=result)
            else:
                s = replace(s, measured_forward_s=result.forward_s, measured_backward_s=result.backward_s)
            if progress:
                progress(f"measured {s.model} training batch {s.batch}")
        out.append(s)
    return out


def _measure_or_why(model: str, predicted_total_s: float, max_seconds: float, run: Callable):
    """run()'s result, or a note saying why it was not run or failed (a refused batch is a note, not an error)."""
    if model not in roofline_zoo.ZOO:
        return "not measured: only zoo models can be built with real weights"
    if predicted_total_s > max_seconds:
        return (f"not measured: predicted {predicted_total_s:,.0f} s for all runs, over the {max_seconds:,.0f} s "
                "limit (raise --max-measure-s)")
    try:
        return run()
    except RooflineError as e:
        return f"not measured: {e}"
