"""Which worker processes are alive, by our own beat: each worker writes its name with
Redis's clock into one sorted set every ``BEAT_EVERY`` seconds; a worker counts as alive
for ``ALIVE_FOR`` seconds after its last beat. (RQ's heartbeats of an idle worker are
minutes apart: too slow for a readiness check.)"""

from __future__ import annotations

import logging
import threading

import redis

from .keys import PREFIX

logger = logging.getLogger("flask_idms_webhooks")

#: The sorted set of worker names by the time (Redis's) of their last beat.
WORKERS = PREFIX + "workers"
#: How often a worker beats, and how long after its last beat it counts as alive.
BEAT_EVERY, ALIVE_FOR = 5.0, 15.0
#: Names not seen for this long are dropped from the set.
FORGET_AFTER = 3600

#: ZADD the name at Redis's time; drop the names long gone.
BEAT = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return now
"""
#: How many names beat within the last ARGV[1] seconds.
ALIVE = """
local now = tonumber(redis.call('TIME')[1])
return redis.call('ZCOUNT', KEYS[1], now - tonumber(ARGV[1]), '+inf')
"""


def workers_alive(connection: redis.Redis) -> int:
    """How many worker processes beat within ``ALIVE_FOR`` seconds (one round trip)."""
    return int(connection.eval(ALIVE, 1, WORKERS, ALIVE_FOR))


class WorkerBeat(threading.Thread):
    """Beats for one worker process, from a thread of its own, until :meth:`stop`
    (which takes its name out at once)."""

    def __init__(self, connection: redis.Redis, name: str, every: float = BEAT_EVERY) -> None:
        super().__init__(name="idms-worker-beat", daemon=True)
        self.connection, self.worker_name, self.every = connection, name, every
        self._stopping = threading.Event()

    def beat(self) -> None:
        self.connection.eval(BEAT, 1, WORKERS, self.worker_name, FORGET_AFTER)

    def run(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as error:  # away: the worker counts as gone meanwhile
                logger.debug("worker beat not written: %s", error)
            if self._stopping.wait(self.every):
                return

    def stop(self) -> None:
        self._stopping.set()
        if self.is_alive():
            self.join(10)  # a beat under way lands before the name is taken out
        try:
            self.connection.zrem(WORKERS, self.worker_name)
        except redis.RedisError as error:
            logger.debug("worker not taken out of the live set: %s", error)
