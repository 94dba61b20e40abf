"""Hugging Face architectures nobody here wrote, built small from their config classes
(tests/hf_corpus.py): each captures a training and an inference step with every op costed, and
its matmul/conv/attention FLOPs agree with torch's FlopCounterMode formulas within 1%.

The default run checks one architecture per family; `pytest -m slow tests/test_hf_corpus.py`
checks the whole corpus (110 architectures, about 7 minutes on two cores), which must pass at
95% or better. `python bench/hf_corpus.py` prints the table.
"""
from __future__ import annotations

import pytest

from hf_corpus import CORPUS, TIMM, check, timm_imports

ONE_PER_FAMILY = ["LlamaForCausalLM", "DebertaV2ForMaskedLM", "T5ForConditionalGeneration",
                  "EfficientNetForImageClassification", "WhisperForConditionalGeneration",
                  "VideoMAEForVideoClassification", "CLIPModel", "Qwen3MoeForCausalLM", "Mamba2ForCausalLM",
                  "Wav2Vec2ForCTC"]


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_architecture_runs_and_counts_like_flop_counter(name):
    result = check(name)
    assert result.ok, f"{name}: {result.stage} {result.error} {dict(result.unsupported)} {dict(result.fallbacks)}"
    assert result.reference_flops > 0 and result.flops_error <= 0.01, (result.ours_flops, result.reference_flops)


@pytest.mark.slow
def test_corpus_runs_at_95_percent_with_flops_within_1_percent():
    results = [check(name) for names in CORPUS.values() for name in names]
    passed = [r for r in results if r.ok]
    failures = {r.name: f"{r.stage}: {r.error or dict(r.unsupported) or dict(r.fallbacks)}" for r in results
                if not r.ok}
    assert len(results) >= 50 and len(passed) >= 0.95 * len(results), failures
    assert not [r for r in results if r.unsupported], "ops without a rule"
    assert not [r for r in results if r.fallbacks], "ops FakeTensor ran on real zero-filled copies"
    off = {r.name: r.flops_error for r in passed if r.flops_error > 0.01}
    assert not off, off
    for r in results:  # a failure is a clear one-line CaptureError, never a traceback of the model's
        assert not r.error or r.error.startswith("CaptureError"), r.error


@pytest.mark.skipif(not timm_imports(), reason="timm does not import here (it needs a torchvision built for "
                    "this torch)")
@pytest.mark.parametrize("name", TIMM)
def test_timm_model_by_name_runs_and_counts_like_flop_counter(name):
    result = check(name)
    assert result.ok, f"{name}: {result.stage} {result.error} {dict(result.unsupported)} {dict(result.fallbacks)}"
    assert result.reference_flops > 0 and result.flops_error <= 0.01, (result.ours_flops, result.reference_flops)


@pytest.mark.skipif(timm_imports(), reason="timm imports here: the test above runs instead")
def test_timm_by_name_without_timm_is_one_clear_line():
    from estimator.errors import UnknownModelError
    from estimator.model_source import load_model

    with pytest.raises(UnknownModelError, match=r"timm:resnet50 needs the timm package, which does not import"):
        load_model("timm:resnet50")
