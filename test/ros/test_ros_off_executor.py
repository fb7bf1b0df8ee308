"""``segaff_ros.off_executor.in_thread``: a waiting service callback leaves a single-threaded executor free."""
from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import pytest

pytest.importorskip("rclpy", reason="rclpy (ROS 2) is not installed")
pytest.importorskip("segaff_msgs.srv", reason="segaff_msgs is not built (scripts/setup.sh builds it)")

from ros_helpers import spun_node  # noqa: E402
from segaff_ros.off_executor import in_thread  # noqa: E402

pytestmark = pytest.mark.ros

TIMEOUT_S = 10.0


@pytest.fixture
def node() -> Iterator[Any]:
    """A node spun by a SingleThreadedExecutor in a thread, as the perception node's ``main`` spins it."""
    with spun_node("segaff_off_executor_test") as spun:
        yield spun


def call(node: Any, instruction: str) -> Any:
    """Call the node's ``query`` service from this thread; the response, or None after the timeout."""
    from segaff_msgs.srv import Query

    client = node.create_client(Query, "query")
    assert client.wait_for_service(TIMEOUT_S)
    future = client.call_async(Query.Request(instruction=instruction))
    done = threading.Event()
    future.add_done_callback(lambda _: done.set())
    return future.result() if done.wait(TIMEOUT_S) else None


def test_a_waiting_callback_lets_the_executor_deliver_what_it_waits_for(node: Any) -> None:
    """The service waits for a message of a subscription of the same node: with a blocking callback the
    single executor thread would never deliver it."""
    from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
    from std_msgs.msg import String

    from segaff_msgs.srv import Query

    waiting, arrived = threading.Event(), threading.Event()
    node.create_subscription(String, "release", lambda _: arrived.set(), 10)
    publisher = node.create_publisher(String, "release", 10)

    def wait_for_release(response: Any) -> Any:
        waiting.set()
        response.success = arrived.wait(TIMEOUT_S)
        response.message = threading.current_thread().name
        return response

    async def on_query(request: Any, response: Any) -> Any:
        return await in_thread(node, "test_query", wait_for_release, response)

    def release() -> None:  # only once the callback waits, so that an early message cannot pass the test
        waiting.wait(TIMEOUT_S)
        deadline = time.monotonic() + TIMEOUT_S
        while not arrived.is_set() and time.monotonic() < deadline:
            publisher.publish(String())
            time.sleep(0.1)

    # Its own group, as the perception node's ~/query: a group stays busy while its coroutine awaits.
    node.create_service(Query, "query", on_query, callback_group=MutuallyExclusiveCallbackGroup())
    threading.Thread(target=release, daemon=True).start()
    response = call(node, "wait")
    assert response is not None, "no response: the executor was blocked"
    assert response.success, "the subscription's message never reached the waiting callback"
    assert response.message == "test_query"


def test_the_work_s_exception_is_raised_in_the_callback(node: Any) -> None:
    from segaff_msgs.srv import Query

    seen: list[BaseException] = []

    def fail() -> None:
        raise ValueError("bad frame: depth is empty")

    async def on_query(request: Any, response: Any) -> Any:
        try:
            await in_thread(node, "test_query", fail)
        except ValueError as error:
            seen.append(error)
            response.message = str(error)
        return response

    node.create_service(Query, "query", on_query)
    response = call(node, "fail")
    assert response is not None and response.message == "bad frame: depth is empty"
    assert len(seen) == 1


def test_a_node_without_an_executor_is_a_clear_error() -> None:
    import asyncio

    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    lonely = rclpy.create_node("segaff_off_executor_lonely", context=context)
    try:
        with pytest.raises(RuntimeError, match="not spun by an executor"):
            asyncio.run(in_thread(lonely, "never", lambda: None))
    finally:
        lonely.destroy_node()
        context.try_shutdown()
