"""Activation checkpointing per block (`--recompute`): which modules are the blocks, and running
them under torch.utils.checkpoint while a step is captured.

Blocks are the repeated layers of a network: the children of the outermost nn.ModuleList or
nn.Sequential whose children are at least two modules of one class that hold parameters and
sub-modules (GPT-2's `h`, BERT's `layers`, a ResNet stage's bottlenecks). Each block's forward
runs under non-reentrant torch.utils.checkpoint, so the capture records what training with
checkpointing really runs: the forward keeps only each block's input, and the backward re-runs
the block's forward (recorded in phase "backward", owned by the block's modules) before its
gradient.

Example:
    >>> [type(b).__name__ for b in checkpoint_blocks(gpt2_model)][:2]
    ['Block', 'Block']
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import CaptureError


def checkpoint_blocks(model: nn.Module) -> list[nn.Module]:
    blocks: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        for child in module.children():
            kids = list(child.children())
            repeated = (isinstance(child, (nn.ModuleList, nn.Sequential)) and len(kids) >= 2
                        and len({type(k) for k in kids}) == 1 and any(True for _ in kids[0].children())
                        and any(True for _ in kids[0].parameters()))
            if repeated:
                blocks.extend(kids)
            else:
                visit(child)

    visit(model)
    return blocks


@contextlib.contextmanager
def recomputing(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Run every block of `model` under checkpoint while the context is open."""
    blocks = checkpoint_blocks(model)
    if not blocks:
        raise CaptureError(f"--recompute found no repeated blocks in {type(model).__name__} (an nn.ModuleList or "
                           f"nn.Sequential of two or more layers of one class) to checkpoint")
    for block in blocks:
        block.forward = _checkpointed(block.forward)
    try:
        yield blocks
    finally:
        for block in blocks:
            del block.forward  # the instance attribute: the class's forward is back


def _checkpointed(forward):
    def run(*args, **kwargs):
        return checkpoint(forward, *args, use_reentrant=False, **kwargs)
    return run
