"""The time of one collective on a system's network, by algorithm (NCCL's, as its tuning model has them).

Sizes: `nbytes` is the whole buffer (all-reduce: the tensor reduced; all-gather: the gathered
result; reduce-scatter: the input before scattering; all-to-all: what one rank sends in total;
send/recv: the message). Bandwidths are nccl-tests' bus bandwidth (busbw = algbw x 2(n-1)/n for
all-reduce, x (n-1)/n for all-gather and reduce-scatter), the figure a system YAML cites, so
one number per tier serves every group size (all-reduce takes the tier's all-reduce figure, the
other collectives its ring figure: they differ where NVLink SHARP reduces in the switch):

    all-reduce, ring    base + 2(n-1) hops + 2(n-1)/n x S / busbw
    all-reduce, tree    (across nodes) base + 2 log2(nodes) inter-node hops + 2(g-1) intra hops
                        + 2(n-1)/n x S / busbw
    all-gather,         base + (n-1) hops + (n-1)/n x S / busbw
    reduce-scatter
    all-to-all          base + (n-1) hops + the larger of the part staying in the node (over the
                        node's links) and the part leaving it (over the GPU's share of the NICs)
    send/recv           base + one hop + S / the link's bus bandwidth

NCCL picks the faster of ring and tree; the time of each is its latency plus its bytes, so
small messages reach a small part of the bus bandwidth (the size-dependent efficiency that
nccl-tests shows) without a separate curve. A group inside one node runs on the intra-node
tier; a group spanning nodes with g ranks per node gets the smaller of the intra-node bus
bandwidth and the inter-node one x g / gpus_per_node (the nccl-tests inter-node figure is for
every GPU of each node taking part, each with its NIC; with g of them only g NICs carry it).

Example:
    >>> s = load_system("dgx-h100")
    >>> round(collective_s("all_reduce", 2**30, Group(size=8, per_node=8), s), 5)  # 1 GiB inside a node
    0.00396
"""
from __future__ import annotations

import math

from .parallel_layout import Group
from .system import System

KINDS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")


def bus_bytes_per_s(group: Group, system: System, ring: bool = False) -> float:
    """Bus bandwidth a group reaches (module doc); `ring`: of the ring collectives (all-gather,
    reduce-scatter), which an in-network all-reduce (NVLink SHARP) does not speed up."""
    def tier_bus(tier) -> float:
        return tier.ring_bytes_per_s if ring else tier.bus_bytes_per_s
    if group.nodes == 1 or system.inter is None:
        return tier_bus(system.intra)
    across = tier_bus(system.inter) * min(group.per_node, system.gpus_per_node) / system.gpus_per_node
    return min(tier_bus(system.intra), across)


def _ring_hops_s(steps: int, group: Group, system: System) -> float:
    """Latency of `steps` ring steps; of the `size` steps of one round of the ring, `nodes` cross
    between nodes."""
    if group.nodes == 1 or system.inter is None:
        return steps * system.intra.hop_latency_s
    inter_share = (group.nodes) / group.size
    return steps * (inter_share * system.inter.hop_latency_s + (1 - inter_share) * system.intra.hop_latency_s)


def collective_s(kind: str, nbytes: float, group: Group, system: System) -> float:
    """Seconds one rank spends in collective `kind` of `nbytes` over `group` (module doc)."""
    if kind not in KINDS:
        raise ValueError(f"unknown collective {kind!r}; expected one of {', '.join(KINDS)}")
    n = group.size
    if n == 1 or nbytes <= 0:
        return 0.0
    bus = bus_bytes_per_s(group, system, ring=kind != "all_reduce")
    base = system.base_latency_s
    if kind == "all_reduce":
        moved = 2 * (n - 1) / n * nbytes / bus
        ring = base + _ring_hops_s(2 * (n - 1), group, system) + moved
        if group.nodes == 1 or system.inter is None:
            return ring
        tree_hops = (2 * math.ceil(math.log2(group.nodes)) * system.inter.hop_latency_s
                     + 2 * (group.per_node - 1) * system.intra.hop_latency_s)
        return min(ring, base + tree_hops + moved)
    if kind in ("all_gather", "reduce_scatter"):
        return base + _ring_hops_s(n - 1, group, system) + (n - 1) / n * nbytes / bus
    if kind == "all_to_all":
        inside = (group.per_node - 1) / n * nbytes / system.intra.ring_bytes_per_s
        outside = 0.0
        if group.nodes > 1 and system.inter is not None:
            outside = (n - group.per_node) / n * nbytes / (system.inter.ring_bytes_per_s / system.gpus_per_node)
        return base + _ring_hops_s(n - 1, group, system) + max(inside, outside)
    # send/recv between neighbouring pipeline stages: inside a node or over one GPU's NIC share
    if group.nodes == 1 or system.inter is None:
        return base + system.intra.hop_latency_s + nbytes / system.intra.ring_bytes_per_s
    return base + system.inter.hop_latency_s + nbytes / (system.inter.ring_bytes_per_s / system.gpus_per_node)
