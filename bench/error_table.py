"""Error summaries shared by the accuracy benches (bench/published.py, bench/gpu_rows.py).

An error is predicted throughput / measured throughput - 1 (positive: the prediction is too
fast). A summary line gives the count, the mean absolute error, the bias (mean signed error),
how many are within TARGET, and the worst.

    >>> summary("all", [("a", 0.1), ("b", -0.3)], "rows")
    'all                        2 rows  MAE  20.0%  bias  -10.0%  within 25%:  1  worst b -30.0%'
"""
from __future__ import annotations

TARGET = 0.25
KINDS = ("training", "inference", "small batch (<=8)", "large batch (>=64)")


def file_by_kind(kinds: dict[str, list], item: tuple[str, float], train: bool, batch: int) -> None:
    """Append `item` to the per-kind lists it belongs to (KINDS)."""
    kinds["training" if train else "inference"].append(item)
    if batch <= 8:
        kinds["small batch (<=8)"].append(item)
    if batch >= 64:
        kinds["large batch (>=64)"].append(item)


def summary(label: str, errors: list[tuple[str, float]], noun: str) -> str:
    if not errors:
        return f"{label:<24} no {noun}"
    values = [e for _, e in errors]
    worst = max(errors, key=lambda item: abs(item[1]))
    within = sum(abs(e) <= TARGET for e in values)
    return (f"{label:<24}{len(values):>4} {noun}  MAE {100 * sum(map(abs, values)) / len(values):5.1f}%  "
            f"bias {100 * sum(values) / len(values):+6.1f}%  within {100 * TARGET:.0f}%: {within:>2}  "
            f"worst {worst[0]} {100 * worst[1]:+.1f}%")
