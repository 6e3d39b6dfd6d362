"""The Redis registry reached the way an operator configures it: one URL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from presence_app.registry import RegistryUnavailableError, create_registry
from tests.support.redis_server import RedisServer, write_tls_files

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    workdir = tmp_path_factory.mktemp("redis-tls")
    tls_dir = write_tls_files(workdir)
    server = RedisServer(workdir, password="p@ss:w/rd", tls_dir=tls_dir).start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_password_and_tls_work_through_the_url(tls_server):
    registry = create_registry(tls_server.url, prefix="tls:")
    try:
        await registry.join("a", "ann")

        presence = await registry.presence()
    finally:
        await registry.close()

    assert tls_server.url.startswith("rediss://")
    assert [u.name for u in presence.users] == ["ann"]


async def test_a_wrong_password_is_reported_as_unavailable(tls_server):
    url = tls_server.url.replace("p%40ss", "wrong")
    registry = create_registry(url, prefix="tls:")
    try:
        with pytest.raises(RegistryUnavailableError):
            await registry.join("a", "ann")
    finally:
        await registry.close()


async def test_registries_with_other_prefixes_do_not_see_each_other(redis_server):
    first = create_registry(redis_server.url, prefix="one:")
    second = create_registry(redis_server.url, prefix="two:")
    try:
        await first.join("a", "ann")

        assert (await second.presence()).count == 0
        assert (await first.presence()).count == 1
    finally:
        await first.leave("a")
        await first.close()
        await second.close()


async def test_an_unreachable_server_is_reported_as_unavailable():
    registry = create_registry("redis://127.0.0.1:1/0", prefix="none:")
    try:
        with pytest.raises(RegistryUnavailableError):
            await registry.presence()
    finally:
        await registry.close()
