"""A parallel layout: how a training step is split over GPUs, parsed from `--parallel`.

Dimensions (Megatron-LM's names): tensor parallel `tp` (each block's matmuls split over tp GPUs,
two all-reduces per block each way; `sp` sequence parallel turns each into a reduce-scatter and
an all-gather and splits the norms and dropouts too), pipeline parallel `pp` (the blocks in pp
consecutive stages, 1F1B over micro-batches), expert parallel `ep` (the experts of each MoE
layer spread over ep GPUs of the data-parallel group, tokens exchanged all-to-all) and data
parallel `dp` (replicas, tp x pp x dp = GPUs). How the data-parallel replicas keep their state:

    ddp    every replica holds everything; gradients all-reduced in buckets during the backward
    zero1  optimizer state sharded over dp (DeepSpeed ZeRO stage 1); gradients all-reduced,
           updated parameters all-gathered after the step
    zero2  optimizer state and gradients sharded (gradients reduce-scattered in buckets)
    zero3  parameters too (ZeRO stage 3); the same schedule as fsdp
    distopt  Megatron-LM's distributed optimizer (--use-distributed-optimizer with
           --overlap-grad-reduce and --overlap-param-gather): optimizer state and fp32 master
           sharded over dp, gradients reduce-scattered in buckets during the backward, the updated
           parameters all-gathered unit by unit ahead of the next step's forward
    fsdp   PyTorch FSDP full sharding: each block's parameters all-gathered before its forward and
           its backward, its gradients reduce-scattered after its backward

Ranks are numbered as Megatron numbers them: tp fastest, then dp, then pp, so a TP group is
tp neighbouring GPUs (inside a node when tp <= GPUs per node) and a DP group strides by tp.

Example:
    >>> parse_layout("tp=8,pp=4,dp=2,sp", gpus=64)
    Layout(dp=2, tp=8, pp=4, ep=1, sp=True, data='ddp')
    >>> parse_layout("fsdp", gpus=8).name
    'fsdp dp=8'
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import LayoutError, quoted

DATA_MODES = ("ddp", "zero1", "zero2", "zero3", "fsdp", "distopt")
ALIASES = {"dp": "ddp"}
DIMENSIONS = ("tp", "pp", "dp", "ep")


@dataclass(frozen=True)
class Layout:
    dp: int
    tp: int = 1
    pp: int = 1
    ep: int = 1
    sp: bool = False
    data: str = "ddp"

    @property
    def gpus(self) -> int:
        return self.dp * self.tp * self.pp

    @property
    def shards_parameters(self) -> bool:
        return self.data in ("zero3", "fsdp")

    @property
    def shards_gradients(self) -> bool:
        return self.data in ("zero2", "zero3", "fsdp")

    @property
    def scatters_gradients(self) -> bool:
        """Gradients leave the backward by reduce-scatter (else all-reduce)."""
        return self.data in ("zero2", "zero3", "fsdp", "distopt")

    @property
    def shards_optimizer(self) -> bool:
        return self.data != "ddp"

    @property
    def name(self) -> str:
        parts = [f"{d}={getattr(self, d)}" for d in ("tp", "pp", "ep") if getattr(self, d) > 1]
        return " ".join([self.data, *([",".join(parts)] if parts else []), f"dp={self.dp}"]) + (" sp" if self.sp else "")

    def to_dict(self) -> dict:
        return {"dp": self.dp, "tp": self.tp, "pp": self.pp, "ep": self.ep, "sp": self.sp, "data": self.data,
                "name": self.name}


@dataclass(frozen=True)
class Group:
    """The GPUs of one communicator: `size` ranks, `per_node` of them in each node they span."""

    size: int
    per_node: int

    @property
    def nodes(self) -> int:
        return -(-self.size // self.per_node)


def group(size: int, stride: int, gpus_per_node: int) -> Group:
    """The group of `size` ranks `stride` apart (Megatron's numbering), on nodes of `gpus_per_node`."""
    per_node = 1 if stride >= gpus_per_node else max(1, min(size, gpus_per_node // stride))
    return Group(size, per_node)


def parse_layout(text: str, gpus: int) -> Layout:
    """`--parallel` text to a Layout for `gpus` GPUs (module doc); LayoutError for anything else."""
    words = [w.strip().lower() for w in str(text).split(",")]
    if not text or not all(words):
        raise LayoutError(f"--parallel {quoted(text)} has an empty part; give e.g. ddp, fsdp, zero2, distopt or "
                          "tp=8,pp=4,dp=2[,ep=E][,sp][,fsdp]")
    sizes: dict[str, int] = {}
    data, sp = None, False
    for word in words:
        word = ALIASES.get(word, word)
        if word in DATA_MODES:
            if data is not None:
                raise LayoutError(f"--parallel {quoted(text)} names two data-parallel modes ({data}, {word}); keep one")
            data = word
        elif word == "sp":
            sp = True
        elif "=" in word:
            key, _, value = word.partition("=")
            key = key.strip()
            if key not in DIMENSIONS:
                raise LayoutError(f"--parallel: unknown dimension {quoted(key)} in {quoted(word)}; the dimensions "
                                  f"are {', '.join(DIMENSIONS)} (e.g. tp=8,pp=2,dp=4)")
            if key in sizes:
                raise LayoutError(f"--parallel {quoted(text)} sets {key} twice; give it once")
            try:
                sizes[key] = int(value)
            except ValueError:
                sizes[key] = 0
            if not 1 <= sizes[key] <= 1 << 20:
                raise LayoutError(f"--parallel {key}={quoted(value.strip())}: give a whole number of GPUs from 1 "
                                  f"(e.g. {key}=8)")
        else:
            raise LayoutError(f"--parallel: unknown part {quoted(word)}; give ddp, fsdp, zero1, zero2, zero3, distopt "
                              "or tp=N,pp=N,dp=N,ep=N and sp")
    tp, pp = sizes.get("tp", 1), sizes.get("pp", 1)
    if gpus % (tp * pp):
        raise LayoutError(f"--parallel {quoted(text)}: tp x pp = {tp * pp} does not divide --gpus {gpus}; pick "
                          f"tp and pp whose product divides {gpus}")
    dp = sizes.get("dp", gpus // (tp * pp))
    if tp * pp * dp != gpus:
        raise LayoutError(f"--parallel {quoted(text)}: tp x pp x dp = {tp} x {pp} x {dp} = {tp * pp * dp} GPUs, "
                          f"but --gpus is {gpus}; make the product {gpus} (or leave dp out to fill it)")
    ep = sizes.get("ep", 1)
    if dp % ep:
        raise LayoutError(f"--parallel {quoted(text)}: ep={ep} does not divide dp={dp}; experts are spread over "
                          "GPUs of the data-parallel group, so pick ep dividing dp")
    if sp and tp == 1:
        raise LayoutError(f"--parallel {quoted(text)}: sp (sequence parallel) splits the tensor-parallel group's "
                          "sequence; add tp=N with N > 1 or drop sp")
    return Layout(dp=dp, tp=tp, pp=pp, ep=ep, sp=sp, data=data or "ddp")
