"""The disk cache of captured steps: a round trip keeps the step, keys follow what changes the
graph, damaged entries are recaptured, and the CLI's second run reads instead of capturing."""
import json
import logging
import multiprocessing

import pytest

import roofline_zoo
from estimator import capture, evaluate, load_hardware
from estimator import cli
from estimator import step_cache
from estimator.memory import step_memory
from estimator.step_store import dumps, loads


def _edges(step):
    index = {n: i for i, n in enumerate(step.graph.nodes)}
    return [(index[a], index[n]) for n in step.graph.nodes for a in n.all_input_nodes]


@pytest.mark.parametrize("name, sizes, mode", [("resnet18", {"image": 64}, "train"),
                                               ("gpt2", {"seq": 32}, "train"),
                                               ("bert_base", {"seq": 16}, "inference")])
def test_round_trip_keeps_nodes_edges_costs_and_memory(name, sizes, mode):
    model, inputs = roofline_zoo.get(name).build(batch=2, **sizes)
    step = capture(model, inputs, mode)
    again = loads(dumps(step))
    assert again.nodes == step.nodes
    assert [(n.op, n.name, n.target) for n in again.graph.nodes] == [(n.op, n.name, n.target) for n in step.graph.nodes]
    assert _edges(again) == _edges(step)
    assert [n.meta.get("roofline") for n in again.graph.nodes] == [n.meta.get("roofline") for n in step.graph.nodes]
    assert again.extra["structure"] == step.extra["structure"]
    for field in ("mode", "batch", "tokens_per_sample", "parameters", "trainable_parameters", "optimizer"):
        assert getattr(again, field) == getattr(step, field)
    chip = load_hardware("h100-sxm")
    assert evaluate(again, chip, "amp-bf16").totals() == evaluate(step, chip, "amp-bf16").totals()
    assert step_memory(again, "amp-bf16", optimizer=again.optimizer) == step_memory(step, "amp-bf16",
                                                                                   optimizer=step.optimizer)


def test_key_follows_every_setting_and_the_model_file(tmp_path):
    base = dict(batch=2, seq=None, image=64, mode="train", optimizer="adamw", accumulate=1, recompute=False,
                dispatch="cpu", moe_skew=1.0)
    zoo = step_cache.model_identity("resnet18")
    key = step_cache.step_key(zoo, **base)
    assert step_cache.step_key(zoo, **base) == key
    changed = [dict(base, batch=4), dict(base, image=96), dict(base, mode="inference"), dict(base, optimizer="sgd"),
               dict(base, accumulate=2), dict(base, recompute=True), dict(base, dispatch="cuda"),
               dict(base, moe_skew=2.0)]
    keys = {step_cache.step_key(zoo, **s) for s in changed}
    assert len(keys) == len(changed) and key not in keys
    assert step_cache.step_key(step_cache.model_identity("resnet34"), **base) != key
    source = tmp_path / "net.py"
    source.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 4), (torch.randn(2, 4),)\n")
    first = step_cache.step_key(step_cache.model_identity(f"{source}:make"), **base)
    source.write_text("import torch\ndef make():\n    return torch.nn.Linear(4, 8), (torch.randn(2, 4),)\n")
    assert step_cache.step_key(step_cache.model_identity(f"{source}:make"), **base) != first
    assert step_cache.model_identity(f"{tmp_path / 'missing.py'}:make") is None  # the capture reports it


def _run(argv, capsys):
    assert cli.main(argv) == 0
    return capsys.readouterr().out


def test_second_estimate_reads_the_cache_on_another_chip(monkeypatch, capsys):
    argv = ["estimate", "resnet18", "--image", "64", "--batch", "2", "--train", "--json", "-"]
    first = json.loads(_run(argv + ["--hardware", "a100-80gb-sxm"], capsys))
    assert step_cache.usage()[0] == 1

    def no_capture(*a, **k):
        raise AssertionError("captured although the step is cached")

    monkeypatch.setattr(cli, "_capture_step", no_capture)
    again = json.loads(_run(argv + ["--hardware", "a100-80gb-sxm"], capsys))
    assert again == first
    other = json.loads(_run(argv + ["--hardware", "h100-sxm"], capsys))
    assert other["totals"]["step_time_s"] < first["totals"]["step_time_s"]
    with pytest.raises(AssertionError, match="captured although"):
        cli.main(argv + ["--no-cache"])


def test_no_cache_neither_reads_nor_writes(capsys):
    _run(["estimate", "resnet18", "--image", "64", "--no-cache", "--json", "-"], capsys)
    assert step_cache.usage() == (0, 0)


def test_a_damaged_entry_is_recaptured_with_a_warning(capsys, caplog):
    argv = ["estimate", "resnet18", "--image", "64", "--json", "-"]
    first = _run(argv, capsys)
    [entry] = step_cache.entries()
    for damage in (b"", b"not a pickle", entry.read_bytes()[:100]):
        entry.write_bytes(damage)
        with caplog.at_level(logging.WARNING, logger="estimator.step_cache"):
            assert _run(argv, capsys) == first
        assert "unreadable cached step" in caplog.text
        caplog.clear()
        assert loads(entry.read_bytes()).nodes  # rewritten whole


def test_cache_clear_and_info(capsys):
    _run(["estimate", "resnet18", "--image", "64", "--json", "-"], capsys)
    out = _run(["cache", "info"], capsys)
    assert "1 cached steps" in out and str(step_cache.cache_dir()) in out
    out = _run(["cache", "clear"], capsys)
    assert out.startswith("removed 1 cached steps")
    assert step_cache.entries() == []
    assert _run(["cache", "clear"], capsys).startswith("removed 0 cached steps")


def _save_many(key, rounds):
    model, inputs = roofline_zoo.get("resnet18").build(batch=1, image=32)
    step = capture(model, inputs, "inference")
    for _ in range(rounds):
        step_cache.save(key, step)
        loaded = step_cache.load(key)
        assert loaded is None or loaded.nodes == step.nodes


def test_concurrent_writers_leave_one_readable_entry():
    key = "0" * 64
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_save_many, args=(key, 5)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    assert [p.name for p in step_cache.entries()] == [f"{key}.step"]
    assert list(step_cache.cache_dir().glob(".writing-*")) == []
    assert step_cache.load(key) is not None


def test_eviction_keeps_the_cache_under_its_limit(monkeypatch):
    model, inputs = roofline_zoo.get("resnet18").build(batch=1, image=32)
    step = capture(model, inputs, "inference")
    size = len(dumps(step))
    monkeypatch.setenv("ROOFLINE_CACHE_MAX_BYTES", str(2 * size + size // 2))
    for i in range(4):
        step_cache.save(f"{i:064d}", step)
    names = [p.name for p in step_cache.entries()]
    assert len(names) == 2 and f"{3:064d}.step" in names  # the newest stays
    assert step_cache.usage()[1] <= 2 * size + size // 2


def test_study_and_models_share_the_cache(monkeypatch):
    import sys

    import estimator.study as study_module
    from estimator.model_source import zoo_summary
    from estimator.study import Study

    chip = load_hardware("a100-80gb-sxm")
    first = Study(["resnet18"], [chip], [2], image=64).step("resnet18", 2)
    row = zoo_summary("resnet18")
    assert step_cache.usage()[0] == 2

    def no_capture(*a, **k):
        raise AssertionError("captured although the step is cached")

    monkeypatch.setattr(study_module, "capture", no_capture)
    monkeypatch.setattr(sys.modules["estimator.capture"], "capture", no_capture)  # the package's name is the function
    assert Study(["resnet18"], [chip], [2], image=64).step("resnet18", 2).nodes == first.nodes
    assert zoo_summary("resnet18") == row
    with pytest.raises(AssertionError, match="captured although"):
        Study(["resnet18"], [chip], [2], image=64, use_cache=False).step("resnet18", 2)
    with pytest.raises(AssertionError, match="captured although"):
        zoo_summary("resnet18", use_cache=False)


def test_a_layer_roofline_plot_reads_the_cache_and_no_cache_captures(monkeypatch, capsys, tmp_path):
    """`plot roofline` (and `plot breakdown`) read the step `estimate` would: a second plot of
    the same step captures nothing and draws the same picture; --no-cache captures again."""
    import sys

    argv = ["plot", "roofline", "resnet18", "--image", "64", "--batch", "2", "--train"]
    _run(argv + ["--out", str(tmp_path / "first.png")], capsys)
    assert step_cache.usage()[0] == 1

    def no_capture(*a, **k):
        raise AssertionError("captured although the step is cached")

    monkeypatch.setattr(sys.modules["estimator.capture"], "capture", no_capture)  # the package's name is the function
    _run(argv + ["--out", str(tmp_path / "again.png")], capsys)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "first.png").read_bytes()
    with pytest.raises(AssertionError, match="captured although"):
        cli.main(argv + ["--out", str(tmp_path / "fresh.png"), "--no-cache"])


def test_cached_capture_takes_every_setting():
    with pytest.raises(ValueError, match="capture settings"):
        step_cache.cached_capture({"zoo": "resnet18"}, {"batch": 2}, lambda: None)


def test_a_cache_folder_that_is_a_file_only_costs_captures(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a user's file")
    monkeypatch.setenv("ROOFLINE_CACHE_DIR", str(blocker))
    argv = ["estimate", "resnet18", "--image", "64", "--json", "-"]
    assert json.loads(_run(argv, capsys)) == json.loads(_run(argv, capsys))
    assert blocker.read_text() == "a user's file"
    assert "0 cached steps" in _run(["cache", "info"], capsys)
    assert _run(["cache", "clear"], capsys).startswith("removed 0 cached steps")
    assert blocker.read_text() == "a user's file"
