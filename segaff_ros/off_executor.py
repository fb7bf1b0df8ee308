"""Blocking work awaited from a callback without holding the node's executor thread.

The node spins in a single-threaded executor (a multi-threaded one costs ~25 ms per frame and seconds at the
90th percentile on a 2-core CPU: ``bench/node_latency.py``). Callbacks that wait (``~/query`` runs the model
and may wait for a transform; a ``~/perceive`` goal waits for new frames) are coroutines that await
:func:`in_thread`, so the executor goes on delivering frames, transforms and cancel requests meanwhile.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

from rclpy.node import Node

T = TypeVar("T")


async def in_thread(node: Node, name: str, work: Callable[..., T], *args: Any) -> T:
    """``work(*args)`` in a new daemon thread called ``name``; awaiting it yields to ``node``'s executor.

    Its exception, if any, is raised here. The node must have been added to an executor. The awaiting
    callback's group stays busy until it returns: give such a callback a group of its own.
    """
    executor = node.executor
    if executor is None:
        raise RuntimeError(f"{node.get_name()} is not spun by an executor: cannot await {name}")
    future = executor.create_future()

    def run() -> None:
        try:
            future.set_result(work(*args))
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting callback, which re-raises it
            future.set_exception(error)
        executor.wake()  # the awaiting task resumes at the executor's next turn

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future
