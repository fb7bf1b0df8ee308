"""Evaluation across the processes of a distributed run: every sample counted once.

Under DDP each rank evaluates its share of the data set, and the sampler pads the shares to equal length
by repeating samples. :func:`gather_unique` collects every rank's per-sample records (any picklable
objects: :class:`~segaff_core.metrics.SampleResult`, prediction lines) on every rank and keeps one
record per data set index, in index order, so that a metric over N ranks equals the metric of one
process over the same samples. Outside a distributed run it only de-duplicates and sorts.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch.distributed as dist

RecordT = TypeVar("RecordT")


def world_size() -> int:
    """The number of processes of the initialised default process group; 1 without one."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def gather_unique(records: Iterable[RecordT], index_of: Callable[[RecordT], int]) -> list[RecordT]:
    """Every rank's ``records`` on every rank, one per ``index_of(record)`` (the first seen), sorted by it.

    A collective: under DDP every rank must call it, also one with no records. ValueError, under DDP, for
    a record without an index (negative), which could not be told apart from a padding repeat; one
    process keeps such records as they come.
    """
    local = list(records)
    if world_size() == 1 and any(int(index_of(record)) < 0 for record in local):
        return local
    if world_size() > 1:
        gathered: list = [None] * world_size()
        dist.all_gather_object(gathered, local)
        local = [record for part in gathered for record in part]
    unique: dict[int, RecordT] = {}
    for record in local:
        index = int(index_of(record))
        if index < 0:
            raise ValueError("a record without a sample index cannot be de-duplicated across ranks")
        unique.setdefault(index, record)
    return [unique[index] for index in sorted(unique)]
