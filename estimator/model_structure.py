"""What layouts across GPUs need to know of a model's module tree, read once at capture.

The captured graph holds ops, not modules; splitting a model across GPUs needs its repeated
blocks (the unit of pipeline stages, FSDP wrapping and tensor-parallel layers: the blocks of
estimator.recompute), the trainable parameters each block holds, its attention heads and its
experts. Heads come from the usual config attribute names (num_attention_heads, n_head,
num_heads, heads); experts from a child named ``experts`` (an nn.ModuleList, or a module with
``num_experts`` or 3-D stacked weights).

Example:
    >>> s = model_structure(gpt2_model)
    >>> len(s.blocks), s.blocks[0].path, s.heads
    (12, 'h.0', 12)
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .recompute import checkpoint_blocks

HEAD_ATTRIBUTES = ("num_attention_heads", "n_head", "num_heads", "heads", "n_heads")


@dataclass(frozen=True)
class Block:
    path: str  # module path, e.g. "h.3"
    type: str  # module class name
    trainable_elements: int  # trainable parameters it holds (tied ones once, in the first holder)


@dataclass(frozen=True)
class ModelStructure:
    blocks: tuple[Block, ...]
    other_trainable_elements: int  # trainable parameters outside the blocks (embeddings, head, final norm)
    head_trainable_elements: int  # of those, the ones registered after the last block (final norm, untied head)
    heads: int | None  # attention heads per layer, where the model says
    experts: int  # experts per mixture-of-experts layer (0: none)
    expert_trainable_elements: int  # trainable parameters inside the experts modules

    @property
    def trainable_elements(self) -> int:
        return sum(b.trainable_elements for b in self.blocks) + self.other_trainable_elements


def model_structure(model: nn.Module) -> ModelStructure:
    """The blocks, heads and experts of `model` (module doc)."""
    path_of = {id(m): p for p, m in model.named_modules()}
    blocks = [(path_of[id(b)], b) for b in checkpoint_blocks(model) if id(b) in path_of]
    seen: set[int] = set()

    def take(module: nn.Module) -> int:
        n = 0
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n

    table = tuple(Block(path, type(b).__name__, take(b)) for path, b in blocks)
    # modules registered after the last block (final norm, output head) run after it: the head
    block_ids = {id(b) for _, b in blocks}
    modules = [m for _, m in model.named_modules()]
    last_block = max((i for i, m in enumerate(modules) if id(m) in block_ids), default=None)
    head = 0
    if last_block is not None:
        for module in modules[last_block + 1:]:
            if not any(True for _ in module.children()):
                head += take(module)
    other = take(model) + head
    experts, expert_elements = 0, 0
    for path, module in model.named_modules():
        if path.rsplit(".", 1)[-1] == "experts":
            count = _expert_count(module)
            if count:
                experts = max(experts, count)
                expert_elements += sum(p.numel() for p in module.parameters() if p.requires_grad)
    return ModelStructure(table, other, head, _heads(model), experts, expert_elements)


def _expert_count(module: nn.Module) -> int:
    if isinstance(module, nn.ModuleList):
        return len(module)
    count = getattr(module, "num_experts", None)
    if isinstance(count, int):
        return count
    stacked = [p.shape[0] for p in module.parameters(recurse=False) if p.dim() == 3]
    return stacked[0] if stacked else 0


def _heads(model: nn.Module) -> int | None:
    """The attention heads the model's config (or first attention module) names."""
    config = getattr(model, "config", None) or getattr(model, "cfg", None)
    for source in ([config] if config is not None else []) + list(model.modules()):
        for name in HEAD_ATTRIBUTES:
            value = getattr(source, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
    return None
