"""The shared ok/fail/info rule (``harness.client``) and each bundled client's allowlist.

The allowlists are tried on the exceptions the real client libraries raise (asyncpg,
redis-py, the HTTP link's replies); the conformance kit drives the same clients against
real servers. The property: ``fail`` comes out only when the request cannot have left
the client, when it has no effects, or when its error is on the allowlist.
"""

from __future__ import annotations

import errno

import asyncpg
import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from harness.client import Request, classify, describe
from harness.history import FAIL, INFO, INVOKE, Op
from harness.systems import etcd_counter, postgres_counter, redis_counter
from harness.systems.counterd import client as counterd_client
from harness.systems.http_link import HttpError

ADD = Op(INVOKE, "add", 1, 0)


def refused() -> Exception:
    """A library's wrapper of ECONNREFUSED, as redis-py raises it."""
    try:
        try:
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
        except OSError as e:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1:6379.") from e
    except redis.ConnectionError as wrapped:
        return wrapped


ERRORS = [
    refused(), TimeoutError(), OSError(errno.ECONNRESET, "Connection reset by peer"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.SerializationError("could not serialize access due to concurrent update"),
    asyncpg.DeadlockDetectedError("deadlock detected"),
    asyncpg.UniqueViolationError("duplicate key"), asyncpg.InterfaceError("closed"),
    redis.ResponseError("ERR value is not an integer or out of range"),
    redis.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
    redis.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
    redis.ConnectionError("Connection closed by server."), redis.TimeoutError("Timeout"),
    HttpError(400, "bad"), HttpError(404, "no such path"), HttpError(429, "too many"),
    HttpError(500, "add failed"), HttpError(503, "primary unreachable"),
    HttpError(503, "etcdserver: not capable"), HttpError(503, "etcdserver: request timed out"),
    HttpError(504, "primary did not answer"), ValueError("unexpected reply"),
]
ALLOWLISTS = [postgres_counter.definite, redis_counter.definite, etcd_counter.definite,
              counterd_client.definite]


@given(st.sampled_from(ERRORS), st.booleans(), st.booleans(), st.sampled_from(ALLOWLISTS))
def test_fail_only_before_sending_without_effects_or_on_the_allowlist(error, left, effects,
                                                                     definite):
    done = classify(ADD, error, may_have_left=left, effects=effects, definite=definite)
    assert done.type in (FAIL, INFO)
    assert (done.type == FAIL) == (not left or not effects or definite(error) is not None)
    assert isinstance(done.error, str) and done.error and "\n" not in done.error


@pytest.mark.parametrize(("error", "why"), [
    (asyncpg.SerializationError("could not serialize"), "aborted: could not serialize"),
    (asyncpg.DeadlockDetectedError("deadlock detected"), "aborted: deadlock detected"),
    (asyncpg.ConnectionDoesNotExistError("connection was closed"), None),  # class 08
    (asyncpg.PostgresConnectionError("terminating connection"), None),
    (asyncpg.UniqueViolationError("duplicate key"), None),
    (asyncpg.InterfaceError("connection is closed"), None),
    (TimeoutError(), None),
])
def test_postgres_allowlist_is_serialization_failures_and_deadlocks_only(error, why):
    assert postgres_counter.definite(error) == why


def test_a_postgres_connection_lost_after_commit_was_sent_is_info():
    request = Request(ADD, postgres_counter.definite)
    lost = asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of "
                                               "operation")
    assert request.completion(lost).type == FAIL  # before COMMIT: nothing committed
    request.sending()
    done = request.completion(lost)
    assert (done.type, done.error) == (INFO, "ConnectionDoesNotExistError: connection was "
                                             "closed in the middle of operation")


@pytest.mark.parametrize(("error", "definite"), [
    (redis.ResponseError("ERR value is not an integer"), True),
    (redis.exceptions.ReadOnlyError("READONLY"), True),
    (redis.BusyLoadingError("LOADING"), True),
    (redis.ConnectionError("Connection closed by server."), False),
    (TimeoutError("Timeout reading from 127.0.0.1:6379"), False),
])
def test_redis_allowlist_is_error_replies(error, definite):
    assert (redis_counter.definite(error) is not None) == definite


@pytest.mark.parametrize(("status", "message", "counterd", "etcd"), [
    (400, "bad request", True, True),
    (404, "no such path", True, False),
    (429, "etcdserver: too many requests", True, True),
    (500, "add failed", False, False),
    (503, "primary unreachable", True, False),
    (503, "etcdserver: not capable", True, True),
    (503, "etcdserver: request timed out", True, False),
    (503, "etcdserver: leader changed", True, False),
    (504, "primary did not answer", False, False),
])
def test_http_allowlists(status, message, counterd, etcd):
    error = HttpError(status, message)
    assert (counterd_client.definite(error) is not None) == counterd
    assert (etcd_counter.definite(error) is not None) == etcd


def test_error_texts_group_well():
    assert describe(refused()) == "connection-refused"
    assert describe(TimeoutError(), connecting=True) == "connect-timeout"
    assert describe(TimeoutError()) == "timeout"
    assert describe(HttpError(503, "primary unreachable")) == "http-503: primary unreachable"
    assert describe(ValueError("first line\nsecond")) == "ValueError: first line"
    assert describe(ValueError()) == "ValueError"
