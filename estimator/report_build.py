"""`roofline report`: run a study, draw every figure, write tables, comments, HTML and Markdown.

The seed 002 assignment in one command: chips (part 1), models' FLOPs, parameters, memory and
intensity (2.2) on the rooflines (2.3) with which is bound by what (2.4), latency vs FLOPs
and parameters (3.1, 3.2), their rank correlations (3.3, 3.4), throughput vs batch (3.5),
measured points on the local roofline (4.1) and the gap to peak (4.2), forward:backward
ratios (5.1) and per-layer-type breakdowns (5.2). Output folder layout:

    DIR/report.html   one self-contained page (images embedded)
    DIR/report.md     the same in Markdown, linking figures/ and tables/
    DIR/report.json   every number, SI units
    DIR/figures/*.png (and *.svg with --svg),  DIR/tables/*.csv

Each model at each batch, each model's training step with its two figures, and each other
figure is a job: given a pool (parallel_work.worker_pool) the jobs run in its worker processes,
else here one after another; the folder's content is the same either way. Measurements run
here, alone, after every capture has ended.

Example:
    >>> build_report(ReportSettings(models=["resnet18", "vit_b_16"], chips=[load_hardware("a100-80gb-sxm")],
    ...                             batches=[1, 64]), Path("out"))
    >>> with worker_pool(usable_cores()) as pool:
    ...     build_report(settings, Path("out"), pool=pool)
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from matplotlib.figure import Figure as MplFigure

from . import commentary, plot_charts, plot_roofline
from .errors import RooflineError
from .hardware import Hardware, catalog_and_local
from .output_paths import write_json
from .parallel_work import InlineExecutor, finished
from .plot_style import save_figures
from .report_page import Figure, Section, Table, write_pages
from .study import (PhaseSplit, Progress, RankCorrelation, Study, StudyPoint, measure_phase_splits, measure_points,
                    rank_correlations)

MIN_CHIPS_FIGURE = 10


@dataclass(frozen=True)
class ReportSettings:
    models: list[str]
    chips: list[Hardware]
    batches: list[int]
    precision: str = "fp32"
    chip_precisions: dict[str, str] = field(default_factory=dict)  # chip id -> precision, overriding `precision`
    train_batch: int = 8
    seq: int | None = None
    image: int | None = None
    measure: bool = False  # time the points of the `local` chip on this machine
    warmup: int = 1
    runs: int = 3
    max_measure_s: float = 120.0
    svg: bool = False  # also write each figure as SVG
    use_cache: bool = True  # captured steps from and to the disk cache (estimator.step_cache)


@dataclass
class _Output:
    """The report's jobs on `pool` and its figures, listed in the report's order."""

    out_dir: Path
    svg: bool
    pool: Executor
    progress: Progress | None
    figures: list[str] = field(default_factory=list)  # report.json's list
    pending: dict[Future, list[str]] = field(default_factory=dict)  # jobs under way -> their progress texts

    def advance(self, done: str) -> None:
        if self.progress:
            self.progress(done)

    def skip(self, name: str) -> None:
        """A figure not drawn (no data for it): the progress still advances."""
        self.advance(f"figure {name} skipped")

    def submit(self, texts: list[str], job: Callable, *args) -> Future:
        """Run job(*args) on the pool; the progress advances by `texts` when it ends."""
        future = self.pool.submit(job, *args)
        self.pending[future] = texts
        return future

    def figure(self, name: str, caption: str, make: Callable[..., MplFigure], *args) -> Figure:
        """Draw make(*args) as figures/NAME.png (and .svg) in a job; the report's Figure for it."""
        self.submit([f"figure {_stem(name)}"], _draw, make, args, self.out_dir, _stem(name), self.svg)
        return self.drawn(name, caption)

    def drawn(self, name: str, caption: str) -> Figure:
        """The report's Figure for figures/NAME.png, which a job draws (`figure`, `_training`)."""
        self.figures.append(f"figures/{_stem(name)}.png")
        return Figure(self.figures[-1], caption)

    def wait(self, futures: Iterable[Future] | None = None) -> None:
        """Until the jobs of `futures` (default: all) have ended, advancing the progress as any job ends."""
        wanted = set(self.pending if futures is None else futures) & set(self.pending)
        for future in finished(list(self.pending)) if wanted else ():
            for text in self.pending.pop(future):
                self.advance(text)
            wanted.discard(future)
            if not wanted:
                break


def _stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _draw(make: Callable[..., MplFigure], args: tuple, out_dir: Path, stem: str, svg: bool) -> None:
    """A job: write make(*args) as figures/STEM.png and, with `svg`, .svg."""
    save_figures(make(*args), [out_dir / "figures" / f"{stem}{suffix}" for suffix in (".png", ".svg")[:1 + svg]])


def _study(settings: ReportSettings) -> Study:
    return Study(settings.models, settings.chips, settings.batches, settings.precision, settings.train_batch,
                 settings.seq, settings.image, settings.chip_precisions, settings.use_cache)


def _model_points(settings: ReportSettings, model: str) -> dict[int, list[StudyPoint]]:
    """A job: `model` at every inference batch, costed on every chip (one job, so that the steps
    past the two smallest batches are derived from those two: Study.step)."""
    study = _study(settings)
    return {batch: study.batch_points(model, batch) for batch in study.batches}


def _training(settings: ReportSettings, model: str, out_dir: Path) -> list[PhaseSplit]:
    """A job: `model`'s training step captured and costed on every chip, its breakdown and
    per-layer roofline figures written (they need the step, which stays in the worker)."""
    study = _study(settings)
    reports = {chip.id: study.report(model, study.train_batch, chip, mode="train") for chip in study.chips}
    _draw(plot_charts.breakdown, (reports[_breakdown_chip(study).id], "pie"), out_dir, _stem(f"breakdown_{model}"),
          settings.svg)
    _draw(plot_roofline.layer_roofline, (list(reports.values()),), out_dir, _stem(f"roofline_{model}"), settings.svg)
    return study.model_phase_splits(model)


def work_units(settings: ReportSettings) -> int:
    """How many progress callbacks `build_report` makes, for a progress bar's total."""
    n_models, n_batches, n_chips = len(settings.models), len(settings.batches), len(settings.chips)
    study = n_models * (n_batches + 1)
    measured = n_models * (n_batches + 1) if settings.measure else 0
    figures = 3 + 2 * n_chips + 2 * n_models + (1 if settings.measure else 0)
    return study + measured + figures


def build_report(settings: ReportSettings, out_dir: Path, progress: Progress | None = None,
                 pool: Executor | None = None) -> dict:
    """Run everything and write the folder (see the module doc); returns report.json's content."""
    _check(settings)
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    study = _study(settings)
    output = _Output(out_dir, settings.svg, pool or InlineExecutor(), progress)
    chips_section = _chips_section(settings, output)
    batch_jobs = {model: output.submit([f"{model} batch {batch}" for batch in study.batches], _model_points, settings,
                                       model) for model in study.models}
    training_jobs = {model: output.submit([f"{model} training batch {study.train_batch}",
                                           f"figure breakdown_{_stem(model)}", f"figure roofline_{_stem(model)}"],
                                          _training, settings, model, out_dir) for model in study.models}
    output.wait(batch_jobs.values())
    points = [p for model in study.models for batch in study.batches for p in batch_jobs[model].result()[batch]]
    if settings.measure:  # timed alone, after every job has ended
        output.wait()
        points = measure_points(study, points, "local", settings.warmup, settings.runs, settings.max_measure_s,
                                progress)
        splits = measure_phase_splits(study, _splits(study, training_jobs, output), "local", settings.warmup,
                                      settings.runs, settings.max_measure_s, progress)
    try:
        correlation = rank_correlations(points, [c.id for c in settings.chips])
    except RooflineError as e:  # too few (model, batch) pairs: the report says so and goes on
        correlation = f"No rank correlation: {e}."
    sections = [chips_section, _models_section(study, points, output),  # their figure jobs start now
                _latency_section(study, points, correlation, settings.measure, output)]
    if not settings.measure:
        splits = _splits(study, training_jobs, output)
    sections += [_phases_section(study, splits), _breakdown_section(study, output),
                 _layer_rooflines_section(study, output)]
    output.wait()
    context = (f"{len(settings.models)} models · inference batches {', '.join(map(str, study.batches))} · "
               f"chips {', '.join(f'{c.id} ({study.precision_of(c).name})' for c in settings.chips)} · training batch "
               f"{settings.train_batch} · {'measured on this machine' if settings.measure else 'predictions only'} · "
               f"torch-roofline, {date.today().isoformat()}. Latency = one forward pass of the batch.")
    write_pages("Roofline report", context, sections, out_dir)
    data = {"context": context, "settings": _settings_dict(settings),
            "points": [p.to_dict() for p in points], "phase_splits": [s.to_dict() for s in splits],
            "correlation": None if isinstance(correlation, str) else {
                "labels": list(correlation.labels), "matrix": [list(r) for r in correlation.matrix],
                "samples": correlation.samples},
            "comments": {s.title: s.paragraphs for s in sections}, "figures": output.figures}
    data = _finite(data)
    write_json(out_dir / "report.json", data)  # whole or not at all (a temporary file, then a rename)
    return data


def _splits(study: Study, training_jobs: dict[str, Future], output: _Output) -> list[PhaseSplit]:
    """The training jobs' phase splits in the study's model order, once they have ended."""
    output.wait(training_jobs.values())
    return [s for model in study.models for s in training_jobs[model].result()]


def _check(settings: ReportSettings) -> None:
    if settings.measure and "local" not in [c.id for c in settings.chips]:
        raise RooflineError("--measure times models on this machine, the `local` chip: add local to --hardware "
                            "(after `roofline calibrate`)")
    for value, option in ((settings.warmup, "--warmup"), (settings.runs, "--runs")):
        if value < (1 if option == "--runs" else 0):
            raise RooflineError(f"{option} must be at least {1 if option == '--runs' else 0}, got {value}")


def _settings_dict(settings: ReportSettings) -> dict:
    data = {k: getattr(settings, k) for k in settings.__dataclass_fields__}
    data["chips"] = [c.id for c in settings.chips]
    return data


def _catalog_chips(settings: ReportSettings) -> list[Hardware]:
    chips = {c.id: c for c in catalog_and_local()}
    for chip in settings.chips:
        chips.setdefault(chip.id, chip)
    return list(chips.values())


def _chips_section(settings: ReportSettings, output: _Output) -> Section:
    chips = _catalog_chips(settings)
    if len(chips) < MIN_CHIPS_FIGURE:
        raise RooflineError(f"the chips figure needs at least {MIN_CHIPS_FIGURE} chips, found {len(chips)}")
    figure = output.figure("chips", "Rooflines of the catalog chips (dense 16-bit matrix peak where the chip has "
                           "one, else fp32).", plot_roofline.chips_roofline, chips)
    rows = [(c.id, c.name, c.kind, plot_roofline.chip_precision(c).name, _chip_peak(c), c.memory_bytes_per_s,
             _chip_peak(c) / c.memory_bytes_per_s, c.memory_capacity_bytes) for c in chips]
    table = Table("Chips", ("chip", "name", "kind", "precision", "peak TFLOP/s (16-bit or fp32)", "bandwidth GB/s",
                            "ridge FLOP/B", "memory GB"), rows, "chips.csv",
                  ("chip", "name", "kind", "peak_precision", "peak_flops_per_s", "memory_bytes_per_s",
                   "ridge_flops_per_byte", "memory_capacity_bytes"),
                  (None, None, None, None, _scaled(1e-12, "{:,.4g}"), _scaled(1e-9, "{:,.0f}"), "{:,.1f}".format,
                   _scaled(1e-9, "{:,.0f}")))
    ridges = sorted(chips, key=lambda c: _chip_peak(c) / c.memory_bytes_per_s)
    text = [f"{len(chips)} chips. Ridge points range from {_ridge(ridges[0])} ({ridges[0].id}) to "
            f"{_ridge(ridges[-1])} ({ridges[-1].id}): a layer needs at least that many FLOPs per byte moved to be "
            "compute-bound there. Accelerators' matrix peaks grew faster than their bandwidth, so their ridges sit "
            "far right of CPUs': the same model is more often memory-bound on a GPU than on a CPU. Sources for "
            "every figure are in each chip's YAML (`roofline hardware show ID`)."]
    return Section("1. Chips", text, [figure], [table])


def _chip_peak(chip: Hardware) -> float:
    """The peak the chips figure draws: 16-bit matrix, else fp32 (plot_roofline.chip_precision)."""
    return chip.matrix_peak(plot_roofline.chip_precision(chip))


def _ridge(chip: Hardware) -> str:
    return f"{_chip_peak(chip) / chip.memory_bytes_per_s:,.1f} FLOP/B"


def _models_section(study: Study, points: list[StudyPoint], output: _Output) -> Section:
    figures = [output.figure("models", "FLOPs, parameters, memory footprint and arithmetic intensity per model; "
                             "intensity vs batch.", plot_charts.models_overview, points)]
    for chip in study.chips:
        figures.append(output.figure(f"models_roofline_{chip.id}", f"Each model at each batch on the {chip.id} "
                                     "roofline (predicted; hollow: measured).", plot_roofline.models_roofline, points,
                                     chip, study.precision_of(chip).name))
    rows = [(p.model, p.batch, p.chip, p.flops, p.parameters, p.memory_bytes, p.intensity, p.bound,
             p.memory_bound_share, p.predicted_s, p.measured_s, p.predicted_samples_per_s, p.measured_samples_per_s,
             p.measured_note) for p in points]
    table = Table("Models at each batch on each chip (inference forward)",
                  ("model", "batch", "chip", "GFLOPs", "params M", "memory MB", "FLOP/B", "bound",
                   "time memory-bound", "predicted ms", "measured ms", "predicted samples/s", "measured samples/s",
                   "note"), rows, "points.csv",
                  ("model", "batch", "chip", "flops", "parameters", "memory_bytes", "intensity_flops_per_byte", "bound",
                   "memory_bound_share", "predicted_s", "measured_s", "predicted_samples_per_s",
                   "measured_samples_per_s", "measured_note"),
                  (None, None, None, _scaled(1e-9, "{:,.2f}"), _scaled(1e-6, "{:,.1f}"), _scaled(1e-6, "{:,.0f}"),
                   "{:,.1f}".format, None, "{:.0%}".format, _MS, _MS, "{:,.1f}".format, "{:,.1f}".format, None))
    return Section("2. Models: compute, memory and intensity", commentary.bound_comments(points), figures, [table])


def _latency_section(study: Study, points: list[StudyPoint], correlation: RankCorrelation | str, measured: bool,
                     output: _Output) -> Section:
    """Scatter plots, the gap to peak and, when there are enough pairs, the rank correlations
    (`correlation` is then a RankCorrelation, else the sentence saying why there is none)."""
    figures = []
    for chip in study.chips:
        figures.append(output.figure(f"scatter_{chip.id}", f"Predicted latency vs FLOPs and parameters, and "
                                     f"throughput vs batch, on {chip.id}.", plot_charts.latency_scatter, points, chip.id))
    if measured and any(p.measured_s for p in points):
        figures.append(output.figure("scatter_local_measured", "Measured latency and throughput on this machine.",
                                     plot_charts.latency_scatter, points, "local", True))
    if isinstance(correlation, str):
        output.skip("correlation")
        return Section("3-4. Latency, throughput and the gap to peak", commentary.gap_comments(points) + [correlation],
                       figures)
    figures.append(output.figure("correlation", f"Spearman rank correlations over {correlation.samples} (model, "
                                 "batch) pairs.", plot_charts.correlation_heatmap, correlation))
    labels = correlation.labels
    table = Table("Spearman rank correlation", ("",) + labels,
                  [(_snake(a),) + tuple(row) for a, row in zip(labels, correlation.matrix)], "correlation.csv",
                  ("quantity",) + tuple(map(_snake, labels)),
                  ({_snake(a): a for a in labels}.get,) + ("{:.2f}".format,) * len(labels))
    text = commentary.gap_comments(points) + commentary.proxy_comments(correlation, points)
    return Section("3-4. Latency, throughput and the gap to peak", text, figures, [table])


def _phases_section(study: Study, splits: list[PhaseSplit]) -> Section:
    rows = [(s.model, s.batch, s.chip, s.forward_flops, s.backward_flops, s.flops_ratio, s.forward_s,
             s.backward_s, s.time_ratio, s.measured_forward_s, s.measured_backward_s, s.measured_time_ratio,
             s.measured_note) for s in splits]
    ratio = "1 : {:.2f}".format
    table = Table(f"Forward : backward of a training step at batch {study.train_batch}",
                  ("model", "batch", "chip", "fwd GFLOPs", "bwd GFLOPs", "FLOPs fwd:bwd", "predicted fwd ms",
                   "predicted bwd ms", "time fwd:bwd", "measured fwd ms", "measured bwd ms", "measured fwd:bwd",
                   "note"), rows, "forward_backward.csv",
                  ("model", "batch", "chip", "forward_flops", "backward_flops", "flops_ratio", "forward_s",
                   "backward_s", "time_ratio", "measured_forward_s", "measured_backward_s", "measured_time_ratio",
                   "measured_note"),  # the keys of report.json's phase_splits; ratios: backward / forward
                  (None, None, None, _scaled(1e-9, "{:,.2f}"), _scaled(1e-9, "{:,.2f}"), ratio, _MS, _MS, ratio, _MS,
                   _MS, ratio, None))
    return Section("5.1 Training: forward vs backward", commentary.phase_comments(splits), [], [table])


def _breakdown_chip(study: Study) -> Hardware:
    """The chip of the breakdown figures: the first that is not this machine."""
    return next((c for c in study.chips if c.id != "local"), study.chips[0])


def _breakdown_section(study: Study, output: _Output) -> Section:
    chip = _breakdown_chip(study)
    figures = [output.drawn(f"breakdown_{model}", f"{model}: time, FLOPs and bytes per layer type, forward and "
                            f"backward, on {chip.id}.") for model in study.models]
    text = [f"Training step at batch {study.train_batch} on {chip.id}: shares of predicted time, FLOPs and bytes "
            "moved per layer type, forward (top) and backward with the optimizer's update (bottom)."]
    return Section("5.2 Where a training step's time goes, per layer type", text, figures, folded=True)


def _layer_rooflines_section(study: Study, output: _Output) -> Section:
    figures = [output.drawn(f"roofline_{model}", f"{model}: every layer's forward and backward on each chip's "
                            "roofline.") for model in study.models]
    text = ["Every layer of each model's training step as a point on each chip's roofline: forward in blue, "
            "backward in red, area by predicted time; the star is the whole step."]
    return Section("Per-layer rooflines", text, figures, folded=True)


def _scaled(factor: float, pattern: str) -> Callable[[float], str]:
    """How a page shows a raw SI value: times `factor` (1e-9: GFLOPs, GB), through `pattern`."""
    return lambda value: pattern.format(value * factor)


_MS = _scaled(1e3, "{:,.3f}")  # seconds shown as milliseconds


def _finite(data):
    """`data` with every non-finite number (a ratio over zero, a correlation of constants) as None, for JSON."""
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return None if isinstance(data, float) and not math.isfinite(data) else data


def _snake(label: str) -> str:
    """A correlation label ("predicted latency", "FLOPs") as a CSV header."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
