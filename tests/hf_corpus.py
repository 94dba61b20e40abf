"""A corpus of Hugging Face architectures, built small from their config classes, and the checks
run on each: a training and an inference step capture with no unsupported op, and the matmul /
conv / attention FLOPs of the training step against FlopCounterMode's formulas.

"Small" changes depth only (layer counts to 2, experts to at most 8): widths stay at the config
class's defaults, so the op shapes are the architecture's own; fake tensors make width free.
Inputs come from estimator.hf_inputs, as `roofline estimate --hf-config` makes them.

Used by tests/test_hf_corpus.py and bench/hf_corpus.py.

Example:
    >>> result = check("BertForMaskedLM")
    >>> result.ok, result.flops_error
    (True, 0.0)
"""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call
from torch.utils._pytree import tree_map_only
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import conv_flop_count, flop_registry, sdpa_backward_flop_count, sdpa_flop_count, shape_wrapper

import estimator  # noqa: F401  (registers the cost rules)
from estimator.capture import DefaultLoss, capture
from estimator.data_dependent import run_fake
from estimator.model_source import hf_model, load_model
from estimator.precision import PRECISIONS
from estimator.roofline import step_costs

aten = torch.ops.aten

# family -> transformers model classes (the config class is the model class's own)
CORPUS = {
    "decoder": ["GPT2LMHeadModel", "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "PhiForCausalLM", "Phi3ForCausalLM",
                "FalconForCausalLM", "GPTNeoXForCausalLM", "GPTJForCausalLM", "BloomForCausalLM", "OPTForCausalLM",
                "CodeGenForCausalLM", "StableLmForCausalLM", "OlmoForCausalLM", "Olmo2ForCausalLM",
                "CohereForCausalLM", "GPTBigCodeForCausalLM", "XGLMForCausalLM", "GPTNeoForCausalLM",
                "MptForCausalLM", "GraniteForCausalLM", "SmolLM3ForCausalLM"],
    "encoder": ["BertForMaskedLM", "RobertaForMaskedLM", "DistilBertForMaskedLM", "AlbertForMaskedLM",
                "ElectraForMaskedLM", "DebertaForMaskedLM", "DebertaV2ForMaskedLM", "XLMRobertaForMaskedLM",
                "MPNetForMaskedLM", "FunnelForMaskedLM", "ConvBertForMaskedLM", "CanineModel",
                "LongformerForMaskedLM", "BigBirdForMaskedLM", "FNetForMaskedLM", "ModernBertForMaskedLM",
                "XLNetLMHeadModel", "ReformerModelWithLMHead", "LayoutLMForMaskedLM", "PerceiverForMaskedLM"],
    "encoder-decoder": ["T5ForConditionalGeneration", "BartForConditionalGeneration",
                        "PegasusForConditionalGeneration", "MBartForConditionalGeneration", "MarianMTModel",
                        "BlenderbotForConditionalGeneration", "LEDForConditionalGeneration",
                        "MT5ForConditionalGeneration", "UMT5ForConditionalGeneration",
                        "LongT5ForConditionalGeneration", "ProphetNetForConditionalGeneration"],
    "vision": ["ViTForImageClassification", "DeiTForImageClassification", "BeitForImageClassification",
               "SwinForImageClassification", "Swinv2ForImageClassification", "ConvNextForImageClassification",
               "ConvNextV2ForImageClassification", "ResNetForImageClassification", "RegNetForImageClassification",
               "EfficientNetForImageClassification", "MobileNetV2ForImageClassification",
               "MobileViTForImageClassification", "SegformerForSemanticSegmentation", "DetrForObjectDetection",
               "YolosForObjectDetection", "Dinov2Model", "PoolFormerForImageClassification",
               "LevitForImageClassification", "CvtForImageClassification", "PvtForImageClassification",
               "DPTForDepthEstimation", "FocalNetForImageClassification"],
    "audio": ["Wav2Vec2ForCTC", "HubertForCTC", "WavLMForCTC", "Data2VecAudioForCTC", "SEWForCTC",
              "WhisperForConditionalGeneration", "Speech2TextForConditionalGeneration",
              "ASTForAudioClassification", "Wav2Vec2BertForCTC"],
    "video": ["VideoMAEForVideoClassification", "TimesformerForVideoClassification", "VJEPA2ForVideoClassification",
              "VivitForVideoClassification"],
    "multimodal": ["CLIPModel", "SiglipModel", "AlignModel", "ChineseCLIPModel", "GroupViTModel", "OwlViTModel"],
    "moe": ["MixtralForCausalLM", "Qwen2MoeForCausalLM", "Qwen3MoeForCausalLM", "DeepseekV3ForCausalLM",
            "GptOssForCausalLM", "OlmoeForCausalLM", "PhimoeForCausalLM", "JambaForCausalLM"],
    "state-space": ["MambaForCausalLM", "Mamba2ForCausalLM", "FalconMambaForCausalLM", "RwkvForCausalLM"],
}
# timm models by name (`timm:NAME`), checked the same way where timm imports
TIMM = ["timm:resnet50", "timm:vit_base_patch16_224", "timm:convnext_tiny", "timm:efficientnet_b0",
        "timm:deit_small_patch16_224", "timm:swin_tiny_patch4_window7_224", "timm:mobilenetv3_large_100",
        "timm:regnety_040"]
FAMILY = {name: family for family, names in {**CORPUS, "timm": TIMM}.items() for name in names}

DEPTH_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "encoder_layers", "decoder_layers",
              "num_decoder_layers", "num_encoder_layers")
EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts")
MATMUL_CONV = (aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten.convolution, aten.convolution_backward)


# where cutting the depth alone breaks the architecture's own consistency checks
OVERRIDES = {
    "FunnelForMaskedLM": {"block_sizes": [1, 1, 1]},
    "DPTForDepthEstimation": {"num_hidden_layers": 12},  # its neck reads hidden states 2, 5, 8, 11
    "JambaForCausalLM": {"attn_layer_offset": 1, "attn_layer_period": 2, "expert_layer_offset": 1,
                         "expert_layer_period": 2},
    "DetrForObjectDetection": {"use_timm_backbone": False, "use_pretrained_backbone": False},
    "Wav2Vec2BertForCTC": {"vocab_size": 32},
    "ReformerModelWithLMHead": {"is_decoder": True, "axial_pos_shape": (16, 32)},  # must multiply to the length
}


# token lengths other than the inputs' default (512), where the architecture fails above one
SEQ = {"ProphetNetForConditionalGeneration": 128}  # its n-gram attention breaks at 511-512 tokens


def timm_imports() -> bool:
    """Whether timm imports here (it needs a torchvision whose C extension matches torch)."""
    try:
        import timm  # noqa: F401
    except Exception:  # ImportError, or torchvision failing to register its ops
        return False
    return True


def small_config(cls):
    """The class's default config with depth cut to 2 layers (and experts to 8), sub-configs too;
    then the architecture's OVERRIDES."""
    config = cls.config_class(**OVERRIDES.get(cls.__name__, {}))
    _shrink(config)
    for key, value in OVERRIDES.get(cls.__name__, {}).items():
        setattr(config, key, value)
    for sub in ("text_config", "vision_config", "audio_config", "encoder", "decoder"):
        child = getattr(config, sub, None)
        if child is not None and hasattr(child, "to_dict"):
            _shrink(child)
    return config


def _shrink(config) -> None:
    aliases = getattr(type(config), "attribute_map", {})  # e.g. ConvNext's num_hidden_layers -> num_stages
    for key in DEPTH_KEYS:
        value = getattr(config, key, None) if key not in aliases else None
        if isinstance(value, int) and value > 2:
            try:
                setattr(config, key, 2)
            except NotImplementedError:  # a derived property (Funnel, ProphetNet): set its parts instead
                pass
    layer_types = getattr(config, "layer_types", None)  # per-layer lists must match the new depth
    if isinstance(layer_types, list) and len(layer_types) > 2:
        config.layer_types = layer_types[:2]
    for key in EXPERT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 8:
            setattr(config, key, 8)
    top_k = getattr(config, "num_experts_per_tok", None)
    if isinstance(top_k, int) and top_k > 8:
        config.num_experts_per_tok = 8
    if getattr(config, "n_group", None):  # DeepSeek's group routing: groups must divide the experts
        config.n_group, config.topk_group = 1, 1


@dataclass
class Result:
    name: str
    family: str
    ok: bool = False
    stage: str = ""  # where it failed: build | train | inference | flops | unsupported | fallback
    error: str = ""
    unsupported: Counter = field(default_factory=Counter)  # op -> count, over both steps
    fallbacks: Counter = field(default_factory=Counter)  # op -> count of real kernels FakeTensor ran on zero copies
    ours_flops: float = 0.0  # matmul/conv/attention FLOPs of the training step (forward + backward)
    reference_flops: float = 0.0  # FlopCounterMode's, plus the bias adds our convention counts
    seconds: float = 0.0

    @property
    def flops_error(self) -> float:
        return abs(self.ours_flops - self.reference_flops) / self.reference_flops if self.reference_flops else 0.0


def check(name: str, batch: int = 2, seq: int | None = None) -> Result:
    """Build `name` small, capture train and inference steps, compare FLOPs (see module doc).
    `seq` None: the inputs' defaults (512 tokens), 64 for state-space models, whose CPU path
    (without the CUDA scan kernels) runs one step per token."""
    result = Result(name, FAMILY.get(name, "?"))
    start = time.perf_counter()
    try:
        if name.startswith("timm:"):
            model, inputs, _ = load_model(name, batch=batch)
        else:
            import transformers

            seq = seq or SEQ.get(name) or (64 if result.family == "state-space" else None)
            model, inputs, _ = hf_model(small_config(getattr(transformers, name)), name, batch=batch, seq=seq)
        for mode in ("train", "inference"):
            result.stage = mode
            with _counting_fallbacks(result.fallbacks):
                step = capture(model, inputs, mode=mode, model_name=name, optimizer=None)
            costs = step_costs(step, PRECISIONS["fp32"])
            result.unsupported.update(n.name for n, c in zip(step.nodes, costs) if c.op_class == "unsupported")
            if mode == "train":
                result.ours_flops = sum(c.flops for n, c in zip(step.nodes, costs)
                                        if c.op_class in ("matmul", "conv", "attention")
                                        and n.phase in ("forward", "backward"))
        result.stage = "flops"
        result.reference_flops = reference_flops(model, inputs)
        result.ok = not result.unsupported and not result.fallbacks
        result.stage = "" if result.ok else "unsupported" if result.unsupported else "fallback"
    except Exception as e:  # recorded, so one architecture's failure does not hide the others'
        result.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:240] if str(e).strip() else ''}"
    result.seconds = time.perf_counter() - start
    return result


@contextlib.contextmanager
def _counting_fallbacks(counts: Counter):
    """Counts, by op, the calls FakeTensor runs by its fallback: the real CPU kernel on
    zero-filled real copies of the arguments, as big as the model's tensors (an op without a
    meta kernel; `_fused_sgd_` took 1.4 GB for GPT-2 that way before it had a formula)."""
    import torch._subclasses.fake_tensor as fake_tensor

    real = fake_tensor.run_fallback_kernel

    def counted(mode, func, *args, **kwargs):
        counts[str(func)] += 1
        return real(mode, func, *args, **kwargs)

    fake_tensor.run_fallback_kernel = counted
    try:
        yield
    finally:
        fake_tensor.run_fallback_kernel = real


def reference_flops(model, inputs: dict | tuple) -> float:
    """FlopCounterMode's formulas (torch.utils.flop_counter.flop_registry) over the forward and
    backward of the training step, plus one FLOP per output element for fused biases (our
    convention; the formulas count products only), on fake CPU tensors. The formulas are applied
    by a plain dispatch mode: FlopCounterMode's own module tracker rejects models that pass a leaf
    parameter straight into a submodule (YOLOS). torch has no formula for the CPU fused
    attention kernels; they get torch's formulas for the CUDA ones (the same arithmetic)."""
    fake = lambda t, grad=False: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype,  # noqa: E731
                                                     device="cpu").requires_grad_(grad)
    model.train()
    with FakeTensorMode(allow_non_fake_inputs=True), _batched_experts(model):
        params = {n: fake(p, p.requires_grad) for n, p in model.named_parameters()}
        buffers = {n: fake(b) for n, b in model.named_buffers()}
        fake_inputs = tree_map_only(torch.Tensor, fake, inputs)
        args, kwargs = ((), fake_inputs) if isinstance(fake_inputs, dict) else (tuple(fake_inputs), {})
        with _FlopFormulas() as counter:
            output = functional_call(model, {**params, **buffers}, args, kwargs)
            loss = DefaultLoss()(output)
            torch.autograd.grad(loss, [p for p in params.values() if p.requires_grad], allow_unused=True)
    return float(counter.total)


@contextlib.contextmanager
def _batched_experts(model):
    """torch has no FLOP formula for _grouped_mm (transformers' default experts); the reference
    runs transformers' batched_mm experts instead: one bmm per (token, expert) pair, the same
    products, counted by torch's bmm formula."""
    configs = {id(c): c for m in model.modules() if (c := getattr(m, "config", None)) is not None
               and getattr(c, "_experts_implementation", None) == "grouped_mm"}.values()
    for config in configs:
        config._experts_implementation = "batched_mm"
    try:
        yield
    finally:
        for config in configs:
            config._experts_implementation = "grouped_mm"


def _cpu_attention(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_attention_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


FORMULAS = {**flop_registry,
            aten._scaled_dot_product_flash_attention_for_cpu: shape_wrapper(_cpu_attention),
            aten._scaled_dot_product_flash_attention_for_cpu_backward: shape_wrapper(_cpu_attention_backward)}


class _FlopFormulas(TorchDispatchMode):
    """Sums torch's FLOP formulas over the ops run, plus our bias convention."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = run_fake(func, args, kwargs, "")  # capture's assumptions for data-dependent ops
        op = func.overloadpacket
        if op in FORMULAS:
            self.total += FORMULAS[op](*args, **kwargs, out_val=out)
        if op in (aten.addmm, aten.baddbmm):
            self.total += out.numel()
        elif op is aten.convolution and args[2] is not None:
            self.total += out.numel()
        elif op is aten.convolution_backward:
            self.total += args[0].numel() if args[10][2] else 0
            self.total -= _grouped_weight_grad_excess(args, out)
        return out


def _grouped_weight_grad_excess(args, out) -> int:
    """FlopCounterMode is wrong for grouped convolutions' weight gradient: its formula contracts
    over all input channels, not a group's, so it counts `groups` times the products. This is
    the excess, from torch's own conv_flop_count, to take off."""
    grad_out, x, _, _, _, _, _, transposed, _, groups, mask = args[:11]
    if groups == 1 or not mask[1]:
        return 0
    t = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731
    first, second = (grad_out, x) if transposed else (x, grad_out)
    counted = conv_flop_count(t(first.shape), t(second.shape), t(out[1].shape), transposed=False)
    return counted - counted // groups
