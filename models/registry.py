"""The zoo's registry: each entry builds a model and its example inputs.

Convention: builders construct the module on the device they are given ("meta" by default,
so no weights are allocated); example inputs are tensors of the right shape and dtype on
that device.

Example:
    >>> from roofline_zoo import get
    >>> entry = get("resnet50")
    >>> model, inputs = entry.build(batch=2)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: how to build it, what it eats, and where its size comes from."""

    name: str
    family: str  # "cnn", "vit", "decoder", "encoder", ...
    input_kind: str  # "image" (N, 3, H, W floats) or "tokens" (N, S int64 ids)
    make_model: Callable[[], nn.Module]
    reference: str  # where the published parameter count comes from
    default_image: int | None = None
    default_seq: int | None = None
    vocab_size: int | None = None
    max_positions: int | None = None
    num_classes: int | None = None

    def example_inputs(self, batch: int = 1, image: int | None = None, seq: int | None = None,
                       device: str | torch.device = "meta") -> tuple[torch.Tensor, ...]:
        """Example inputs for `batch` samples at the default (or given) image size / length."""
        if self.input_kind == "image":
            size = image or self.default_image
            return (torch.randn(batch, 3, size, size, device=device),)
        length = seq or self.default_seq
        return (torch.randint(0, self.vocab_size, (batch, length), device=device),)

    def build(self, batch: int = 1, image: int | None = None, seq: int | None = None,
              device: str | torch.device = "meta") -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """The model (on `device`, no weights allocated on meta) and its example inputs."""
        with torch.device(device):
            model = self.make_model()
        return model, self.example_inputs(batch, image, seq, device)


ZOO: dict[str, ZooEntry] = {}


def register(entry: ZooEntry) -> ZooEntry:
    """Add an entry to the zoo; a duplicate name is a programming error."""
    if entry.name in ZOO:
        raise ValueError(f"zoo model {entry.name!r} registered twice")
    ZOO[entry.name] = entry
    return entry


def get(name: str) -> ZooEntry:
    """The entry called `name`; KeyError if there is none (the CLI turns it into advice)."""
    return ZOO[name]
