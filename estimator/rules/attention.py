"""Fused scaled dot-product attention, every kernel torch emits on CPU and CUDA.

With q (b, h, s_q, d), k (b, h, s_k, d), v (b, h, s_k, d_v):
  forward  = QK^T (2 b h s_q s_k d) + PV (2 b h s_q s_k d_v)
  backward = recomputed QK^T (2bh s_q s_k d) + dV = P^T dO (2bh s_q s_k d_v)
           + dP = dO V^T (2bh s_q s_k d_v) + dQ = dS K (2bh s_q s_k d) + dK = dS^T Q (2bh s_q s_k d)
as torch.utils.flop_counter counts them (the softmax inside the kernel is not counted).
Executed FLOPs are those; with is_causal the model FLOPs count only the unmasked scores,
s_q*s_k - s_q*(s_q-1)/2 of them when s_q == s_k (about half).
Bytes: q, k, v (and mask) read, the output (and logsumexp) written; the s_q x s_k score
matrix never reaches memory. The flash/efficient CUDA kernels (_flash_attention_*,
_efficient_attention_*) take (b, s, h, d) instead of (b, h, s, d).
"""
from __future__ import annotations

from ..costs import Cost, cost_rule, read_write


def _dims(q, k, v, seq_first: bool):
    if seq_first:  # (b, s, h, d)
        (b, s_q, h, d), s_k, d_v = q.shape, k.shape[1], v.shape[-1]
    else:  # (b, h, s, d); the CPU kernel and the sdpa wrappers
        *lead, s_q, d = q.shape
        b, h = (lead + [1, 1])[:2] if len(lead) < 2 else lead[:2]
        s_k, d_v = k.shape[-2], v.shape[-1]
    return b, h, s_q, s_k, d, d_v


def _scores(s_q: int, s_k: int, causal: bool, bottom_right: bool = False) -> int:
    """Number of (query, key) pairs that take part: all, or the causal triangle.

    torch's is_causal mask is tril(ones(s_q, s_k)), aligned top-left: query i sees keys 0..i.
    The bottom-right alignment (the efficient kernel's custom_mask_type 2) shifts it by s_k - s_q.
    """
    if not causal:
        return s_q * s_k
    if bottom_right:
        if s_q <= s_k:
            return s_q * (s_q + 1) // 2 + s_q * (s_k - s_q)
        return s_k * (s_k + 1) // 2
    if s_q <= s_k:
        return s_q * (s_q + 1) // 2
    return s_q * s_k - s_k * (s_k - 1) // 2


def _attention_cost(node, nbytes, q, k, v, causal: bool, backward: bool, seq_first: bool = False,
                    bottom_right: bool = False) -> Cost:
    b, h, s_q, s_k, d, d_v = _dims(q, k, v, seq_first)
    per_score = (3 * d + 2 * d_v) if backward else (d + d_v)
    executed = 2 * b * h * s_q * s_k * per_score
    model = 2 * b * h * _scores(s_q, s_k, causal, bottom_right) * per_score
    return Cost(executed, *read_write(node, nbytes), "attention", model if causal else None)


def _arg(node, index: int, name: str, default=False):
    if name in node.kwargs:
        return node.kwargs[name]
    return node.args[index] if len(node.args) > index else default


# kernel: (index of q, index of is_causal, is a backward, takes (b, s, h, d)); the sdpa
# wrappers take (b, h, s, d), the low-level flash kernel (b, s, h, d)
SDPA_KERNELS = {
    "_scaled_dot_product_flash_attention_for_cpu": (0, 4, False, False),
    "_scaled_dot_product_flash_attention_for_cpu_backward": (1, 7, True, False),
    "_scaled_dot_product_flash_attention": (0, 4, False, False),
    "_scaled_dot_product_flash_attention_backward": (1, 11, True, False),
    "_scaled_dot_product_efficient_attention": (0, 6, False, False),
    "_scaled_dot_product_efficient_attention_backward": (1, 11, True, False),
    "_scaled_dot_product_cudnn_attention": (0, 6, False, False),
    "_scaled_dot_product_cudnn_attention_backward": (1, 14, True, False),
    "_scaled_dot_product_fused_attention_overrideable": (0, 5, False, False),
    "_scaled_dot_product_fused_attention_overrideable_backward": (1, 13, True, False),
    "_flash_attention_forward": (0, 8, False, True),
    "_flash_attention_backward": (1, 11, True, True),
}


def _sdpa_rule(q_index: int, causal_index: int, backward: bool, seq_first: bool):
    def rule(node, nbytes):
        q, k, v = node.args[q_index:q_index + 3]
        causal = bool(_arg(node, causal_index, "is_causal"))
        return _attention_cost(node, nbytes, q, k, v, causal, backward, seq_first)
    rule.__name__ = "sdpa_backward" if backward else "sdpa_forward"
    return rule


for _name, _spec in SDPA_KERNELS.items():
    cost_rule(_name, op_class="attention")(_sdpa_rule(*_spec))


@cost_rule("_efficient_attention_forward", op_class="attention")
def efficient_forward(node, nbytes):
    # custom_mask_type (arg 9): 0 none, 1 causal from top-left, 2 causal from bottom-right
    q, k, v = node.args[:3]
    mask_type = _arg(node, 9, "custom_mask_type", 0)
    return _attention_cost(node, nbytes, q, k, v, bool(mask_type), backward=False, seq_first=True,
                           bottom_right=mask_type == 2)


@cost_rule("_efficient_attention_backward", op_class="attention")
def efficient_backward(node, nbytes):
    q, k, v = node.args[1:4]
    mask_type = _arg(node, 14, "custom_mask_type", 0)
    return _attention_cost(node, nbytes, q, k, v, bool(mask_type), backward=True, seq_first=True,
                           bottom_right=mask_type == 2)
