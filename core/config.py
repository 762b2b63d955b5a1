"""Frozen run configuration: what the CLI builds once and the engine reads.

Every policy is a frozen dataclass validated in ``__post_init__`` and varied with
``dataclasses.replace``, so a config that exists is a config that is valid. Defaults live here as
module constants; the CLI shows them in ``--help`` from the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from poolfetch.core.access import AccessOptions
from poolfetch.core.errors import ConfigError
from poolfetch.core.request import CommandLineRequest

DEFAULT_WORKERS = 10
DEFAULT_BURST = 1
DEFAULT_RETRIES = 3
DEFAULT_RETRY_ON: frozenset[int] = frozenset({429, 500, 502, 503, 504})
DEFAULT_BACKOFF = 0.5
DEFAULT_MAX_BACKOFF = 60.0
DEFAULT_MAX_RETRY_AFTER = 300.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_REDIRECTS = 10
#: Connection-level failures in a row after which a host is given up (0: never).
DEFAULT_MAX_HOST_ERRORS = 20
MAX_WORKERS = 1024
MAX_PROCESSES = 256
#: Jobs admission reads ahead of the ones the workers are busy with (contract: at least 1,000),
#: so a paused host's queue never starves the other hosts.
DEFAULT_LOOKAHEAD = 1000


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Request-start limits. ``None`` means unlimited; every attempt is counted.

    ``qps_given`` / ``per_host_qps_given``: the rates as the user wrote them (``60/m``), for
    the summary. ``rate_headers``: obey the quota servers announce (``core/quota.py``); off in
    a bare ``RateLimit`` (a caller of the engine opts in; it changes when requests start), on
    from the CLI unless ``--no-rate-headers``.
    """

    qps: float | None = None
    burst: int = DEFAULT_BURST
    per_host_qps: float | None = None
    per_host_connections: int | None = None
    adaptive: bool = True
    rate_headers: bool = False
    qps_given: str | None = None
    per_host_qps_given: str | None = None

    def __post_init__(self) -> None:
        for name in ("qps", "per_host_qps"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be greater than 0, not {value}")
        if self.burst < 1:
            raise ConfigError(f"--burst must be at least 1, not {self.burst}")
        if self.per_host_connections is not None and self.per_host_connections < 1:
            raise ConfigError(
                f"--per-host-connections must be at least 1, not {self.per_host_connections}"
            )


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When a failed attempt is tried again and how long to wait first."""

    retries: int = DEFAULT_RETRIES
    retry_on: frozenset[int] = DEFAULT_RETRY_ON
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    #: Retry POST/PATCH after failures where the server may have acted on them.
    retry_unsafe: bool = False

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ConfigError(f"--retries must be 0 or more, not {self.retries}")
        if self.backoff < 0 or self.max_backoff < 0 or self.max_retry_after < 0:
            raise ConfigError("--backoff, --max-backoff and --max-retry-after must be 0 or more")
        for code in self.retry_on:
            if not 100 <= code <= 599:
                raise ConfigError(f"--retry-on: {code} is not an HTTP status code")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Time limits of one attempt, in seconds.

    ``connect`` and ``read`` bound each wait on the network (``--timeout``): a server that stops
    sending fails the attempt. ``total`` (``--max-time``, None: no limit) bounds the whole
    transfer, for a server that sends a byte now and then, each within the read timeout.
    """

    connect: float = DEFAULT_TIMEOUT
    read: float = DEFAULT_TIMEOUT
    total: float | None = None

    def __post_init__(self) -> None:
        if not (self.connect > 0 and self.read > 0):
            raise ConfigError("--timeout must be greater than 0")
        if self.total is not None and not self.total > 0:
            raise ConfigError("--max-time must be greater than 0")


@dataclass(frozen=True, slots=True)
class FetchConfig:
    """Everything one run needs; built once by the CLI (or a test) and never mutated."""

    workers: int = DEFAULT_WORKERS
    pool_size: int | None = None
    rate: RateLimit = field(default_factory=RateLimit)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeouts: Timeouts = field(default_factory=Timeouts)
    headers: tuple[tuple[str, str], ...] = ()
    user_agent: str | None = None
    max_bytes: int | None = None
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    output_dir: Path | None = None
    state_path: Path | None = None
    refresh: bool = False
    lookahead: int = DEFAULT_LOOKAHEAD
    #: ``-C``: keep bodies cut off as partial files and resume them with Range.
    resume_partial: bool = False
    #: ``--limit-rate``: body bytes per second over all workers (None: unlimited).
    limit_rate: int | None = None
    request: CommandLineRequest = field(default_factory=CommandLineRequest)
    access: AccessOptions = field(default_factory=AccessOptions)
    max_host_errors: int = DEFAULT_MAX_HOST_ERRORS
    #: Worker processes (``--processes``); 1 runs the workers as threads of this process.
    processes: int = 1
    #: Pin each worker process to a CPU of its own (``--pin-cpu``).
    pin_processes: bool = True

    def __post_init__(self) -> None:
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ConfigError(f"--workers must be between 1 and {MAX_WORKERS}, not {self.workers}")
        if self.pool_size is not None and self.pool_size < 1:
            raise ConfigError(f"--pool-size must be at least 1, not {self.pool_size}")
        if self.max_bytes is not None and self.max_bytes < 0:
            raise ConfigError("--max-bytes must be 0 or more")
        if self.max_redirects < 0:
            raise ConfigError("--max-redirects must be 0 or more")
        if self.lookahead < 1:
            raise ConfigError("lookahead must be at least 1")
        if self.resume_partial and (self.output_dir is None or self.state_path is None):
            raise ConfigError("--continue needs both -o/--output-dir and --state")
        if self.limit_rate is not None and self.limit_rate < 1:
            raise ConfigError("--limit-rate must be at least 1 byte per second")
        if self.max_host_errors < 0:
            raise ConfigError(f"--max-host-errors must be 0 or more, not {self.max_host_errors}")
        if not 1 <= self.processes <= MAX_PROCESSES:
            raise ConfigError(
                f"--processes must be between 1 and {MAX_PROCESSES}, not {self.processes}"
            )

    @property
    def effective_pool_size(self) -> int:
        """Hosts whose keep-alive pool each worker keeps (``--pool-size``, default: workers)."""
        return self.pool_size if self.pool_size is not None else self.workers
