"""Hugging Face models nobody here wrote, built from configs on the meta device, through the
whole `estimate` path in training mode; their sizes must equal our zoo's equivalents."""
from __future__ import annotations

import pytest
import torch

import estimator
import roofline_zoo

transformers = pytest.importorskip("transformers")


def _meta(cls, config):
    with torch.device("meta"):
        return cls(config)


def _tokens(vocab: int, seq: int = 32) -> dict:
    return {"input_ids": torch.randint(0, vocab, (2, seq))}


def _image(size: int = 224) -> dict:
    return {"pixel_values": torch.randn(2, 3, size, size)}


# (zoo twin, HF model factory, inputs); configs are the published defaults of each architecture
CASES = {
    "bert_base": (lambda: _meta(transformers.BertModel, transformers.BertConfig()), lambda: _tokens(30522)),
    "gpt2": (lambda: _meta(transformers.GPT2LMHeadModel, transformers.GPT2Config()), lambda: _tokens(50257)),
    "vit_b_16": (lambda: _meta(transformers.ViTForImageClassification, transformers.ViTConfig(num_labels=1000)),
                 _image),
    "resnet50": (lambda: _meta(transformers.ResNetForImageClassification, transformers.ResNetConfig(num_labels=1000)),
                 _image),
    # Llama-2-7B's config (reference_counts.yaml: vocab 32000, d 4096, 32 layers, ffn 11008, MHA)
    "llama2_7b": (lambda: _meta(transformers.LlamaForCausalLM, transformers.LlamaConfig(
        vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
        num_key_value_heads=32, max_position_embeddings=4096)), lambda: _tokens(32000, 16)),
}


@pytest.mark.parametrize("zoo_name", sorted(CASES))
def test_hf_model_through_estimate_matches_zoo_twin(zoo_name):
    make_model, make_inputs = CASES[zoo_name]
    model = make_model()
    report = estimator.estimate(model, make_inputs(), hardware="h100-sxm", precision="amp-bf16", mode="train")
    totals = report.totals()
    assert report.unsupported() == []
    assert totals["forward_flops"] > 0 and totals["backward_flops"] > totals["forward_flops"]
    twin, _ = roofline_zoo.get(zoo_name).build()
    assert totals["parameters"] == sum(p.numel() for p in {id(p): p for p in twin.parameters()}.values())
