"""The zoo's transformers (ViT/DeiT/Swin, BERT/DistilBERT, GPT-2, Llama/Mistral/Mixtral): exact
published parameter counts, forward FLOPs against published MACs and the Kaplan formula, the
too-long-sequence error, and the MoE routing assumption. Every model is built on meta."""
from __future__ import annotations

import time

import pytest
import torch

import estimator
import roofline_zoo
from roofline_zoo.llama import Llama, LlamaConfig

# (zoo name, exact parameter count, source); the yaml is ../shared/reference/reference_counts.yaml
PUBLISHED = [
    ("vit_l_16", 304_326_632, "torchvision ViT_L_16_Weights.IMAGENET1K_V1 num_params (yaml torchvision_documented)"),
    ("deit_small", 22_050_664, "timm deit_small_patch16_224, 22.05M in the yaml; exact by arithmetic"),
    ("swin_tiny", 28_288_354, "torchvision Swin_T_Weights.IMAGENET1K_V1 num_params (yaml torchvision_documented)"),
    ("bert_base", 109_482_240, "yaml exact_param_counts_nlp bert-base-uncased, with pooler"),
    ("bert_large", 335_141_888, "yaml exact_param_counts_nlp bert-large-uncased, with pooler"),
    ("distilbert", 66_362_880, "transformers DistilBertModel(DistilBertConfig()) = distilbert-base-uncased"),
    ("gpt2_medium", 354_823_168, "transformers GPT2LMHeadModel = gpt2-medium, tied head"),
    ("gpt2_large", 774_030_080, "transformers GPT2LMHeadModel = gpt2-large, tied head"),
    ("gpt2_xl", 1_557_611_200, "yaml exact_param_counts_nlp gpt2-xl, tied head"),
    ("llama2_7b", 6_738_415_616, "yaml exact_param_counts_nlp Llama-2-7B"),
    ("llama3_8b", 8_030_261_248, "yaml exact_param_counts_nlp Llama-3-8B"),
    ("llama3_70b", 70_553_706_496, "yaml exact_param_counts_nlp Llama-3-70B"),
    ("mistral_7b", 7_241_732_096, "yaml exact_param_counts_nlp Mistral-7B-v0.1"),
    ("mixtral_8x7b", 46_702_792_704, "transformers MixtralForCausalLM(MixtralConfig()) = Mixtral-8x7B-v0.1"),
]


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name, params, source", PUBLISHED)
def test_parameter_count_equals_published(name, params, source):
    model, _ = roofline_zoo.get(name).build()
    assert n_params(model) == params, source


def _hf_reference(name):
    """The transformers model with the same config, built on meta (the counts' cross-check)."""
    t = pytest.importorskip("transformers")
    gqa = dict(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=14336, vocab_size=32000)
    configs = {
        "bert_base": lambda: t.BertModel(t.BertConfig()),
        "bert_large": lambda: t.BertModel(t.BertConfig(hidden_size=1024, num_hidden_layers=24,
                                                       num_attention_heads=16, intermediate_size=4096)),
        "distilbert": lambda: t.DistilBertModel(t.DistilBertConfig()),
        "gpt2_medium": lambda: t.GPT2LMHeadModel(t.GPT2Config(n_embd=1024, n_layer=24, n_head=16)),
        "gpt2_large": lambda: t.GPT2LMHeadModel(t.GPT2Config(n_embd=1280, n_layer=36, n_head=20)),
        "gpt2_xl": lambda: t.GPT2LMHeadModel(t.GPT2Config(n_embd=1600, n_layer=48, n_head=25)),
        "llama2_7b": lambda: t.LlamaForCausalLM(t.LlamaConfig(
            vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
            num_attention_heads=32, num_key_value_heads=32)),
        "llama3_8b": lambda: t.LlamaForCausalLM(t.LlamaConfig(**{**gqa, "vocab_size": 128256})),
        "llama3_70b": lambda: t.LlamaForCausalLM(t.LlamaConfig(
            vocab_size=128256, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
            num_attention_heads=64, num_key_value_heads=8)),
        "mistral_7b": lambda: t.MistralForCausalLM(t.MistralConfig(**gqa)),
        "mixtral_8x7b": lambda: t.MixtralForCausalLM(t.MixtralConfig(**gqa, num_local_experts=8,
                                                                     num_experts_per_tok=2)),
    }
    with torch.device("meta"):
        return configs[name]()


@pytest.mark.parametrize("name, params", [(n, p) for n, p, _ in PUBLISHED
                                          if roofline_zoo.get(n).input_kind == "tokens"])
def test_parameter_count_equals_transformers(name, params):
    assert n_params(_hf_reference(name)) == params


def forward_matmul_flops(name, **size) -> tuple[torch.nn.Module, int]:
    """Forward matmul + conv + attention FLOPs at batch 1; no op may lack a cost rule."""
    model, inputs = roofline_zoo.get(name).build(batch=1, **size)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="inference")
    assert report.unsupported() == []
    return model, sum(c.flops for c in report.costs if c.op_class in ("matmul", "conv", "attention"))


# forward GMACs at 224, batch 1: torchvision's 'GFLOPS' column (= GMACs) and timm's infer_gmacs (yaml)
PUBLISHED_GMACS = [("vit_l_16", 61.555), ("deit_small", 4.61), ("swin_tiny", 4.491)]


@pytest.mark.parametrize("name, gmacs", PUBLISHED_GMACS)
def test_vision_forward_flops_within_2_percent_of_published(name, gmacs):
    _, flops = forward_matmul_flops(name)
    assert flops == pytest.approx(2 * gmacs * 1e9, rel=0.02)  # 1 MAC = 2 FLOPs


# (name, seq): the 70B and the MoE only at a short sequence, to keep capture quick
DECODERS = [("gpt2_medium", 128), ("gpt2_large", 128), ("gpt2_xl", 128), ("llama2_7b", 128),
            ("llama3_8b", 128), ("mistral_7b", 128), ("llama3_70b", 16), ("mixtral_8x7b", 16)]


@pytest.mark.parametrize("name, seq", DECODERS)
def test_decoder_forward_flops_per_token_match_kaplan(name, seq):
    """Kaplan et al. 2020 (Table 1): forward per token = 2 N + 2 n_layer n_ctx d_attn, N the
    non-embedding parameters (for an MoE: those a token uses, top-k of E experts), plus the
    de-embedding 2 d_model n_vocab that Kaplan lists separately (the LM head is costed here)."""
    model, flops = forward_matmul_flops(name, seq=seq)
    cfg = model.cfg
    blocks = model.h if hasattr(model, "h") else model.layers
    active = n_params(blocks)
    if getattr(cfg, "experts", 0):
        active -= sum(n_params(b.mlp.experts) for b in blocks) * (cfg.experts - cfg.experts_per_token) // cfg.experts
    kaplan = 2 * active + 2 * cfg.layers * seq * cfg.dim + 2 * cfg.dim * cfg.vocab_size
    assert flops / seq == pytest.approx(kaplan, rel=0.02)


@pytest.mark.parametrize("name", ["bert_base", "bert_large", "distilbert"])
def test_encoder_forward_flops_match_dense_count(name):
    """2 N_layers per token, plus both attention matmuls over all s^2 pairs, plus the pooler."""
    seq = 128
    model, flops = forward_matmul_flops(name, seq=seq)
    cfg = model.cfg
    expected = (2 * n_params(model.layers) * seq + 4 * cfg.layers * seq * seq * cfg.dim
                + (2 * cfg.dim * cfg.dim if cfg.pooler else 0))
    assert flops == pytest.approx(expected, rel=0.02)


TOKEN_MODELS = [n for n, _, _ in PUBLISHED if roofline_zoo.get(n).input_kind == "tokens"]


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_sequence_longer_than_the_positions_is_a_clear_error(name):
    entry = roofline_zoo.get(name)
    model, ids = entry.build(seq=entry.max_positions + 1)
    with pytest.raises(ValueError, match=f"sequence length {entry.max_positions + 1} exceeds the "
                                         f"model's {entry.max_positions} positions"):
        model(*ids)


def test_llama3_8b_builds_on_meta_and_captures_quickly():
    start = time.perf_counter()
    model, inputs = roofline_zoo.get("llama3_8b").build(batch=1, seq=128)
    report = estimator.estimate(model, inputs, hardware="h100-sxm", precision="bf16", mode="inference")
    elapsed = time.perf_counter() - start
    assert report.step.parameters == 8_030_261_248
    assert report.unsupported() == []
    assert elapsed < 20, f"build + capture took {elapsed:.1f}s"


@pytest.mark.parametrize("name, size", [("swin_tiny", {"batch": 2}), ("bert_base", {"seq": 64})])
def test_training_capture_has_a_rule_for_every_op(name, size):
    """Swin's roll/relative-bias gather backward; BERT's dict output through the default loss."""
    model, inputs = roofline_zoo.get(name).build(**size)
    report = estimator.estimate(model, inputs, hardware="a100-80gb-sxm", mode="train")
    totals = report.totals()
    assert report.unsupported() == []
    assert 1.9 < totals["backward_flops"] / totals["forward_flops"] < 2.1


TINY_MOE = LlamaConfig(vocab_size=64, max_positions=32, layers=1, heads=4, kv_heads=2, dim=16, ffn_dim=24,
                       experts=4, experts_per_token=2)


@pytest.mark.parametrize("tokens", [6, 5])  # 6*2 = 12 splits into 4 experts evenly; 5*2 = 10 is padded to 12
def test_moe_with_identical_experts_equals_one_mlp(tokens):
    """The combine is right: the top-k weights sum to 1, so identical experts give the dense MLP."""
    torch.manual_seed(0)
    moe = Llama(TINY_MOE).layers[0].mlp
    for expert in moe.experts[1:]:
        expert.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(1, tokens, TINY_MOE.dim)
    with torch.no_grad():
        torch.testing.assert_close(moe(x), moe.experts[0](x))


@pytest.mark.parametrize("tokens, per_expert", [(6, 3), (5, 3)])  # 5*2 = 10 copies, padded to 12
def test_moe_costs_balanced_routing_of_top_k_experts(tokens, per_expert):
    """Each of the E experts runs on tokens*k/E (rounded up) tokens: top-k of E experts' work per token."""
    with torch.device("meta"):
        model = Llama(TINY_MOE)
    ids = torch.zeros(1, tokens, dtype=torch.long, device="meta")
    report = estimator.estimate(model, (ids,), hardware="a100-80gb-sxm", mode="inference")
    assert report.unsupported() == []
    for e in range(TINY_MOE.experts):
        expert = [c.flops for n, c in zip(report.step.nodes, report.costs)
                  if n.module_path.startswith(f"layers.0.mlp.experts.{e}.") and c.op_class == "matmul"]
        assert expert == [2 * per_expert * TINY_MOE.dim * TINY_MOE.ffn_dim] * 3  # gate, up, down
