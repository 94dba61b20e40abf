"""Jobs in worker processes: the order of a loop in one process, errors that reach the caller as
one line, a report that is the same whichever way it is made, figures saved with one layout,
labels placed by arithmetic where matplotlib draws them."""
import json
import os

import pytest
from matplotlib.text import Text

from estimator.errors import RooflineError, UnknownModelError
from estimator.hardware import load_hardware
from estimator.parallel_work import finished, worker_pool
from estimator.plot_style import new_figure, place_labels, save_figures
from estimator.report_build import ReportSettings, build_report, work_units


def _fail(message: str):
    raise UnknownModelError(message)


def _die():
    os._exit(3)


def test_one_worker_runs_each_job_here_when_reached():
    ran = []
    with worker_pool(1) as pool:
        futures = [pool.submit(ran.append, i) for i in range(3)]
        assert ran == []  # nothing runs at submission: progress can advance between jobs
        for n, _ in enumerate(finished(futures)):
            assert ran == list(range(n + 1))


@pytest.mark.parametrize("workers", [1, 2])
def test_a_job_error_reaches_the_caller_as_itself_without_a_traceback(workers, capfd):
    with pytest.raises(UnknownModelError, match="^unknown model 'resnet5'$"), worker_pool(workers) as pool:
        list(finished([pool.submit(pow, 2, 3), pool.submit(_fail, "unknown model 'resnet5'")]))
    assert "Traceback" not in capfd.readouterr().err


def test_a_worker_that_dies_is_a_one_line_error():
    with pytest.raises(RooflineError, match="worker process died"), worker_pool(2) as pool:
        list(finished([pool.submit(_die)]))


def test_report_in_workers_is_the_report_of_one_process(tmp_path):
    settings = ReportSettings(models=["resnet18", "gpt2"], chips=[load_hardware("a100-80gb-sxm")], batches=[1, 2],
                              train_batch=2, image=32, seq=16, svg=True)
    here, there = [], []
    one = build_report(settings, tmp_path / "one", here.append)
    with worker_pool(2) as pool:
        two = build_report(settings, tmp_path / "two", there.append, pool)
    assert json.dumps(one) == json.dumps(two)  # every number, comment and figure name, in the same order
    assert sorted(here) == sorted(there) and len(there) == work_units(settings)
    names = sorted(p.name for p in (tmp_path / "one" / "figures").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "two" / "figures").iterdir())
    assert {n.rsplit(".", 1)[1] for n in names} == {"png", "svg"} and len(names) == 2 * len(one["figures"])


def test_save_figures_keeps_the_first_layout_for_the_others(tmp_path):
    fig = new_figure(6, 4)
    ax = fig.subplots()
    ax.plot([1, 10, 100], [1, 5, 2])
    ax.set_xlabel("a long label that the layout makes room for")
    png, svg = save_figures(fig, [tmp_path / "f.png", tmp_path / "f.svg"])
    position = ax.get_position().bounds
    assert png.stat().st_size > 0 and svg.read_text().startswith("<?xml")
    save_figures(fig, [tmp_path / "g.svg"])
    assert ax.get_position().bounds == position


def test_labels_sit_where_their_boxes_were_computed_clear_of_each_other():
    fig = new_figure(6, 4)
    ax = fig.subplots()
    xs, ys = [1, 1.1, 1.2, 5, 9], [1, 1.1, 1.0, 5, 9]
    ax.scatter(xs, ys)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    labels = place_labels(ax, xs, ys, ["alpha", "beta", "gamma", "delta", "epsilon"])
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(label, renderer) for label in labels]
    assert all(ax.get_window_extent(renderer).contains(b.x0, b.y0) for b in boxes)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
