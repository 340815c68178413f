"""Device leasing for the scheduler: a lease per device node, released when the node ends, and the retry of an
infrastructure failure (up to MAX_ATTEMPTS) on the device the pool gives next: the same one after a health
check, or a sibling once it is quarantined.

    leases = Leasing(pool)
    got = leases.acquire(key, "pi", "tvm")      # a device name, BUSY (try later) or NONE (quarantined, no sibling)
    retry = leases.end(key, result)             # True: run the node again
"""

from harness.stages.base import StageResult

MAX_ATTEMPTS = 3
BUSY, NONE = "busy", "none"


class Leasing:
    def __init__(self, pool, max_attempts: int = MAX_ATTEMPTS):
        self.pool, self.max_attempts = pool, max_attempts
        self.held: dict[str, str] = {}  # node key -> leased device
        self.attempts: dict[str, int] = {}

    def acquire(self, key: str, device: str, runtime: str) -> str:
        got = self.pool.acquire(device, runtime, holder=key)
        if got is None:
            return BUSY
        if got is False:
            return NONE
        self.held[key] = got
        return got

    def why_none(self, device: str) -> str:
        return (f"no healthy device: {device} is quarantined ({self.pool.quarantined.get(device, '')}) and has no sibling "
                "with the same tags")

    def end(self, key: str, res: StageResult) -> bool:
        """Release the node's lease (if it held one) and tell the pool how it went; True: retry the node."""
        dev = self.held.pop(key, None)
        if dev is None:
            return False
        self.pool.release(dev, key)
        if res.ok:
            self.pool.succeeded(dev)
            return False
        if res.error_kind != "infrastructure":
            return False
        self.pool.failed(dev, res.error or "")
        self.attempts[key] = self.attempts.get(key, 1) + 1
        return self.attempts[key] <= self.max_attempts
