"""The shared limiter: the same ``RequestLimiter`` protocol, with its state in Redis.

Every process of a shared run asks Redis, and each decision is one Lua script, so it is atomic
and uses the Redis server's clock (``TIME``), never the clients'. The rate limits are GCRA (the
token bucket expressed as a "theoretical arrival time"), and the answer is a *reservation*:
the script gives the caller the next free start slot (at most ``HORIZON_S`` ahead) and moves the
bucket past it. Processes therefore get slots in the order they ask: none can starve another,
and no slot is lost between a token appearing and a poller noticing it.

Keys (all under ``poolfetch:run:<id>:lim:``, expiring when idle so 100,000 hosts do not pile up):
``global`` (hash: tat), ``host:<host>`` (hash: tat, paused_until, adaptive state, start
counters), ``inflight:<host>`` (sorted set of leases, so a killed worker's slots expire).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import defaultdict, deque
from typing import Any

import redis

from poolfetch.core import adaptive
from poolfetch.core.config import RateLimit
from poolfetch.core.errors import CoordinationError
from poolfetch.core.limiter import (
    GRANTED,
    HOST_BUSY,
    HOST_PAUSED,
    Admission,
    LimiterSnapshot,
)
from poolfetch.core.ratelimit_headers import Quota

#: Furthest ahead a start slot is reserved; beyond it the caller is told to ask again.
HORIZON_S = 1.0
#: How soon to ask again when another process holds a host's connection slots.
BUSY_RETRY_S = 0.05
#: Idle limiter keys expire after this long.
KEY_TTL_MS = 600_000

_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local qps, burst, host_qps = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local cap, member, lease = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local horizon, ttl = tonumber(ARGV[7]), tonumber(ARGV[8])
local paused = tonumber(redis.call('HGET', KEYS[2], 'paused_until') or '0')
if paused > now then return {'paused', tostring(paused - now)} end
if cap > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= cap then return {'connections', '-1'} end
end
local arate = tonumber(redis.call('HGET', KEYS[2], 'rate') or '0')
if arate > 0 and (host_qps <= 0 or arate < host_qps) then host_qps = arate end
local slot, reason = now, 'global'
local gtat, htat
if qps > 0 then
  gtat = math.max(tonumber(redis.call('HGET', KEYS[1], 'tat') or '0'), now)
  slot = math.max(slot, gtat - (burst - 1) * 1000 / qps)
end
if host_qps > 0 then
  htat = math.max(tonumber(redis.call('HGET', KEYS[2], 'tat') or '0'), now)
  local hslot = htat - (burst - 1) * 1000 / host_qps
  if hslot > slot then slot, reason = hslot, 'host-rate' end
end
if slot - now > horizon then return {reason, tostring(slot - now)} end
if qps > 0 then
  redis.call('HSET', KEYS[1], 'tat', math.max(gtat, slot) + 1000 / qps)
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if host_qps > 0 then redis.call('HSET', KEYS[2], 'tat', math.max(htat, slot) + 1000 / host_qps) end
local second = math.floor(slot / 1000)
local win = tonumber(redis.call('HGET', KEYS[2], 'win') or '0')
if win ~= second then
  local count = tonumber(redis.call('HGET', KEYS[2], 'count') or '0')
  local last = (win == second - 1) and count or 0
  redis.call('HSET', KEYS[2], 'last_rate', last, 'win', second, 'count', 0)
end
redis.call('HINCRBY', KEYS[2], 'count', 1)
redis.call('PEXPIRE', KEYS[2], ttl)
if cap > 0 then
  redis.call('ZADD', KEYS[3], slot + lease, member)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return {'ok', tostring(slot - now)}
"""

_PAUSE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local untl = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0')
if untl > cur then redis.call('HSET', KEYS[1], 'paused_until', untl) end
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[2]), math.ceil(untl - now) + 1000))
return 1
"""

# The adaptive rate, shared: a simpler form of poolfetch.core.adaptive (its constants passed in)
# on the server's clock. It estimates from the host's start counter, not from accepted answers:
# halve on a throttle episode, grow by GROWTH per second, lift at the ceiling.
_ADAPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local throttled, ceiling = ARGV[1] == '1', tonumber(ARGV[2])
local decrease, inc, frac = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cooldown, minrate, lift = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local rate = tonumber(redis.call('HGET', KEYS[1], 'rate') or '0')
if throttled then
  local last_cut = tonumber(redis.call('HGET', KEYS[1], 'last_cut') or '0')
  if now - last_cut < cooldown then return tostring(rate) end
  local current = rate
  if current <= 0 then
    current = tonumber(redis.call('HGET', KEYS[1], 'last_rate') or '0')
    current = math.max(current, tonumber(redis.call('HGET', KEYS[1], 'count') or '0'))
    if current <= 0 then current = (ceiling > 0) and ceiling or 1 end
  end
  if ceiling > 0 then current = math.min(current, ceiling) end
  rate = math.max(minrate, current * decrease)
  redis.call('HSET', KEYS[1], 'rate', rate, 'last_cut', now, 'last_raise', now,
             'throttled_at', current)
  return tostring(rate)
end
if rate <= 0 then return '0' end
local elapsed = now - tonumber(redis.call('HGET', KEYS[1], 'last_raise') or '0')
if elapsed < 0.1 then return tostring(rate) end
local raised = rate + math.max(inc, rate * frac) * elapsed
local lift_at = ceiling
if lift_at <= 0 then
  lift_at = lift * tonumber(redis.call('HGET', KEYS[1], 'throttled_at') or '1')
end
if raised >= lift_at then raised = 0 end
redis.call('HSET', KEYS[1], 'rate', raised, 'last_raise', now)
return tostring(raised)
"""


class RedisLimiter:
    """``RequestLimiter`` backed by Redis, shared by every process of one run."""

    def __init__(self, client: redis.Redis, run_id: str, limits: RateLimit, lease_s: float) -> None:
        self._client = client
        self._prefix = f"poolfetch:run:{run_id}:lim:"
        self._limits = limits
        self._lease_ms = lease_s * 1000
        self._acquire = client.register_script(_ACQUIRE)
        self._pause = client.register_script(_PAUSE)
        self._adapt = client.register_script(_ADAPT)
        self._members: dict[str, deque[str]] = defaultdict(deque)
        self._ids = itertools.count()
        self._token = f"{id(self):x}-{time.monotonic_ns():x}"
        self._lock = threading.Lock()
        self._paused_seen: dict[str, float] = {}

    def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise CoordinationError(f"Redis failed: {exc}") from exc

    def try_acquire(self, host: str) -> Admission:
        limits = self._limits
        member = f"{self._token}:{next(self._ids)}"
        reason, value = self._call(
            self._acquire,
            [
                self._prefix + "global",
                self._prefix + "host:" + host,
                self._prefix + "inflight:" + host,
            ],
            [
                limits.qps or 0,
                limits.burst,
                limits.per_host_qps or 0,
                limits.per_host_connections or 0,
                member,
                self._lease_ms,
                HORIZON_S * 1000,
                KEY_TTL_MS,
            ],
        )
        reason = reason.decode() if isinstance(reason, bytes) else reason
        wait = max(0.0, float(value) / 1000)
        if reason == "ok":
            if limits.per_host_connections:
                with self._lock:
                    self._members[host].append(member)
            return GRANTED if wait == 0 else Admission(wait, None, reserved=True)
        if reason == "connections":  # may be held by another process: ask again soon
            return Admission(BUSY_RETRY_S, HOST_BUSY)
        if reason == HOST_PAUSED:
            with self._lock:
                self._paused_seen[host] = time.monotonic() + wait
        return Admission(max(wait, 0.001), reason)

    def release(self, host: str) -> None:
        if not self._limits.per_host_connections:
            return
        with self._lock:
            members = self._members.get(host)
            member = members.popleft() if members else None
            if members is not None and not members:
                del self._members[host]
        if member is not None:
            try:
                self._client.zrem(self._prefix + "inflight:" + host, member)
            except redis.RedisError as exc:
                raise CoordinationError(f"Redis failed: {exc}") from exc

    def pause_host(self, host: str, seconds: float) -> None:
        self._call(self._pause, [self._prefix + "host:" + host], [seconds * 1000, KEY_TTL_MS])
        with self._lock:
            self._paused_seen[host] = time.monotonic() + seconds

    def record_response(
        self,
        host: str,
        throttled: bool,
        *,
        overloaded: bool = False,
        started: float | None = None,
        bare: bool = False,
    ) -> None:
        # The in-flight limit is not shared (yet): a refusal for being too many at once is
        # no success for the shared adaptive rate either.
        if not self._limits.adaptive or (overloaded and not throttled):
            return
        ceiling = self._limits.per_host_qps or self._limits.qps or 0
        self._call(
            self._adapt,
            [self._prefix + "host:" + host],
            [
                "1" if throttled else "0",
                ceiling,
                adaptive.DECREASE,
                adaptive.INCREASE_PER_S,
                adaptive.GROWTH,
                adaptive.COOLDOWN_S,
                adaptive.MIN_RATE,
                adaptive.LIFT_FACTOR,
            ],
        )

    def record_quota(self, host: str, quota: Quota | None, sent: float) -> None:
        """A spent announced quota pauses the host for every process until its reset.

        Only the pause is shared: pacing what remains and counting the requests in flight
        (``core/quota.py``) are not carried across processes yet.
        """
        if not self._limits.rate_headers or quota is None or quota.remaining > 0:
            return
        if quota.reset_after:
            self.pause_host(host, quota.reset_after)

    def snapshot(self) -> LimiterSnapshot:
        now = time.monotonic()
        with self._lock:
            paused = tuple(
                (h, until - now) for h, until in self._paused_seen.items() if until > now
            )
            self._paused_seen = {h: now + left for h, left in paused}
        return LimiterSnapshot(
            paused=paused, throttled=(), global_qps=self._limits.qps, hosts_tracked=len(paused)
        )
