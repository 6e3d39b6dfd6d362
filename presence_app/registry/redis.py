"""The registry on Redis: the same contract, one truth for every worker.

Keys, all under one prefix:

- ``tabs``: hash, tab -> JSON ``[user key, name, order, worker]``;
- ``seen``: sorted set, tab -> the time it was last seen (the registry's clock);
- ``names``: hash, user key -> the spelling first seen while the user is online;
- ``counts``: hash, user key -> how many tabs the user has;
- ``order`` and ``version``: counters; every change publishes the new version
  on the ``changes`` channel, which each worker watches to fan out;
- ``workers``: sorted set, worker -> the time it last touched the registry;
- ``evicted``: hash, worker -> when others removed its entries, taking it for
  dead; the worker reads and clears its own field.

Every change is one Lua script, so a rename, a transfer or an expiry is one
atomic step whichever worker runs it, and an entry is removed once. Expiry
decisions read the ``seen`` and ``workers`` scores; key TTLs are only a
backstop for a prefix nobody uses any more.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from presence_app.names import user_key
from presence_app.registry import (
    WORKER_TIMEOUT,
    Clock,
    OnlineUser,
    Presence,
    Registry,
    RegistryUnavailableError,
    TabEntry,
)

logger = logging.getLogger(__name__)

# Backstop only: a prefix left behind by a retired deployment fades after a day.
BACKSTOP_TTL = 86_400

# KEYS of every script, in this order, then the channel, ``workers``, ``evicted``.
_KEYS = ("tabs", "seen", "names", "counts", "order", "version")

# Shared by the scripts: take a tab out of its user, dropping the user with
# its last tab. KEYS and ARGV as in each script.
_UNLINK = """
local function unlink(tab)
  local raw = redis.call('HGET', KEYS[1], tab)
  if not raw then return false end
  local key = cjson.decode(raw)[1]
  redis.call('HDEL', KEYS[1], tab)
  redis.call('ZREM', KEYS[2], tab)
  if redis.call('HINCRBY', KEYS[4], key, -1) <= 0 then
    redis.call('HDEL', KEYS[4], key)
    redis.call('HDEL', KEYS[3], key)
  end
  return raw
end
local function changed()
  -- A new version counter starts at the clock in microseconds, so versions
  -- keep growing across a Redis restart that lost the old counter.
  redis.call('SET', KEYS[6], ARGV[#ARGV - 1], 'NX')
  local version = redis.call('INCR', KEYS[6])
  for i = 1, 6 do redis.call('EXPIRE', KEYS[i], ARGV[#ARGV]) end
  redis.call('PUBLISH', KEYS[7], version)
  return version
end
"""

# ARGV: tab, user key, name, now, worker, version seed, ttl
_JOIN = (
    _UNLINK
    + """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local entry = cjson.decode(raw)
  if entry[1] == ARGV[2] then
    entry[4] = ARGV[5]
    redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(entry))
    redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
    return 0
  end
  unlink(ARGV[1])
end
local order = redis.call('INCR', KEYS[5])
local entry = cjson.encode({ARGV[2], ARGV[3], order, ARGV[5]})
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('HSETNX', KEYS[3], ARGV[2], ARGV[3])
redis.call('HINCRBY', KEYS[4], ARGV[2], 1)
return changed()
"""
)

# ARGV: tab, version seed, ttl
_LEAVE = (
    _UNLINK
    + """
if not unlink(ARGV[1]) then return 0 end
return changed()
"""
)

# ARGV: old tab, new tab, now, worker, version seed, ttl
_TRANSFER = (
    _UNLINK
    + """
if ARGV[1] == ARGV[2] then return 0 end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
unlink(ARGV[2])
local entry = cjson.decode(raw)
entry[4] = ARGV[4]
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(entry))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return changed()
"""
)

# ARGV: seen before, this worker, workers silent since before this, now,
# version seed, ttl. A stale entry goes when it is this worker's or its worker
# is silent (which is then told it was evicted); silent workers are forgotten.
_EXPIRE = (
    _UNLINK
    + """
local gone = {}
local silent = tonumber(ARGV[3])
for _, tab in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])) do
  local raw = redis.call('HGET', KEYS[1], tab)
  local owner = raw and cjson.decode(raw)[4]
  local beat = owner and redis.call('ZSCORE', KEYS[8], owner)
  if not raw then
    redis.call('ZREM', KEYS[2], tab)
  elseif owner == ARGV[2] or not beat or tonumber(beat) < silent then
    unlink(tab)
    table.insert(gone, tab)
    if owner ~= ARGV[2] then
      redis.call('HSET', KEYS[9], owner, ARGV[4])
      redis.call('EXPIRE', KEYS[9], ARGV[#ARGV])
    end
  end
end
redis.call('ZREMRANGEBYSCORE', KEYS[8], '-inf', '(' .. ARGV[3])
if #gone > 0 then changed() end
return gone
"""
)

# Tabs touched per ZADD call, so one sweep never builds a huge command.
_TOUCH_CHUNK = 1000


class RedisRegistry(Registry):
    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "presence:",
        clock: Clock | None = None,
        worker: str | None = None,
        worker_timeout: float = WORKER_TIMEOUT,
    ) -> None:
        super().__init__(clock or time.time)
        self.client = client
        self.prefix = prefix
        self._worker = worker
        self.worker_timeout = worker_timeout
        self._keys = [prefix + name for name in _KEYS]
        self._keys += [prefix + "changes", prefix + "workers", prefix + "evicted"]
        # No TTL: it must outlive quiet times, and only a store reset drops it.
        self._epoch_key = prefix + "epoch"
        self._join = client.register_script(_JOIN)
        self._leave = client.register_script(_LEAVE)
        self._transfer = client.register_script(_TRANSFER)
        self._expire = client.register_script(_EXPIRE)

    @property
    def worker(self) -> str:
        """Names this worker in entries and liveness: host and process.

        Read at every use, because a server may build the registry before it
        forks its workers, which must not share one name.
        """
        return self._worker or f"{os.uname().nodename}:{os.getpid()}"

    async def join(self, tab: str, name: str) -> bool:
        args = [tab, user_key(name), name, self.clock(), self.worker, *self._tail()]
        return bool(await self._run(self._join, args))

    async def leave(self, tab: str) -> bool:
        return bool(await self._run(self._leave, [tab, *self._tail()]))

    async def transfer(self, old_tab: str, new_tab: str) -> bool:
        args = [old_tab, new_tab, self.clock(), self.worker, *self._tail()]
        return bool(await self._run(self._transfer, args))

    async def entry(self, tab: str) -> TabEntry | None:
        async with self._errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hget(self._keys[0], tab)
            pipe.zscore(self._keys[1], tab)
            raw, seen = await pipe.execute()
        if raw is None:
            return None
        _, name, _, _ = json.loads(raw)
        return TabEntry(tab=tab, name=name, seen_at=float(seen or 0.0))

    async def touch(self, tabs: Iterable[str], at: float | None = None) -> None:
        now, batch = self.clock() if at is None else at, list(tabs)
        # One round trip: the tabs in chunks, then this worker's liveness.
        async with self._errors(), self.client.pipeline(transaction=False) as pipe:
            for start in range(0, len(batch), _TOUCH_CHUNK):
                chunk = batch[start : start + _TOUCH_CHUNK]
                pipe.zadd(self._keys[1], dict.fromkeys(chunk, now), xx=True)
            pipe.zadd(self._keys[7], {self.worker: self.clock()})
            pipe.expire(self._keys[7], BACKSTOP_TTL)
            await pipe.execute()

    async def expire(self, seen_before: float) -> list[str]:
        now = self.clock()
        args = [seen_before, self.worker, now - self.worker_timeout, now]
        args += self._tail()
        gone = await self._run(self._expire, args)
        return [t.decode() if isinstance(t, bytes) else t for t in gone]

    async def presence(self) -> Presence:
        async with self._errors(), self.client.pipeline(transaction=True) as pipe:
            pipe.hvals(self._keys[0])
            pipe.hgetall(self._keys[2])
            pipe.get(self._keys[5])
            entries, names, version = await pipe.execute()
        return _build_presence(entries, names, int(version or 0))

    async def epoch(self) -> str:
        async with self._errors():
            await self.client.set(self._epoch_key, uuid.uuid4().hex, nx=True)
            return _text(await self.client.get(self._epoch_key) or b"")

    async def evicted(self) -> bool:
        async with self._errors():
            return bool(await self.client.hdel(self._keys[8], self.worker))

    async def workers(self) -> dict[str, str]:
        """Which worker holds each tab (for operators and tests)."""
        async with self._errors():
            entries = await self.client.hgetall(self._keys[0])
        return {_text(t): json.loads(raw)[3] for t, raw in entries.items()}

    async def watch(self, on_change: Callable[[], None]) -> None:
        """Call ``on_change`` for every change any worker makes, until cancelled."""
        async with self._errors(), self.client.pubsub() as pubsub:
            await pubsub.subscribe(self._keys[6])
            # Changes made while we were not listening are picked up now.
            on_change()
            async for message in pubsub.listen():
                if message["type"] == "message":
                    on_change()

    async def close(self) -> None:
        await self.client.aclose()

    def _tail(self) -> list[int]:
        """The arguments every script ends with: version seed, backstop TTL."""
        return [int(self.clock() * 1_000_000), BACKSTOP_TTL]

    async def _run(self, script, args):
        async with self._errors():
            return await script(keys=self._keys, args=args)

    @contextlib.asynccontextmanager
    async def _errors(self):
        # Callers handle one error, whatever redis-py raised.
        try:
            yield
        except (RedisError, OSError) as error:
            raise RegistryUnavailableError(str(error)) from error


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _build_presence(entries, names, version: int) -> Presence:
    tabs: dict[str, int] = {}
    first: dict[str, int] = {}
    for raw in entries:
        key, _, order, _ = json.loads(raw)
        tabs[key] = tabs.get(key, 0) + 1
        first[key] = min(order, first.get(key, order))
    spelled = {_text(k): _text(v) for k, v in names.items()}
    users = tuple(
        OnlineUser(spelled.get(key, key), tabs[key])
        for key in sorted(first, key=first.__getitem__)
    )
    return Presence(version=version, users=users)


def from_url(
    url: str,
    prefix: str,
    clock: Clock | None = None,
    worker_timeout: float = WORKER_TIMEOUT,
) -> RedisRegistry:
    """A registry on the Redis at ``url`` (passwords and rediss:// included)."""
    client = aioredis.Redis.from_url(url, health_check_interval=10)
    return RedisRegistry(
        client, prefix=prefix, clock=clock, worker_timeout=worker_timeout
    )
