"""Settings for tests: fast retries and timeouts, loopback allowed, the suite's JWT secret."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

from service.core.settings import Settings
from tests.support.keys import ENCRYPTION_KEYS
from tests.support.tokens import JWT_SECRET


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "jwt_secret": JWT_SECRET,
        "encryption_keys": ENCRYPTION_KEYS,
        "retry_schedule": (0.05, 0.05, 0.05),
        "retry_jitter": 0.0,
        "delivery_timeout": 2.0,
        "lease_margin": 2.0,
        "poll_interval": 0.2,
        "shutdown_grace": 2.0,
        "allowed_networks": (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        "database_pool_min": 1,
        "database_pool_max": 5,
        # A circuit that opens in a test probes again soon (tests of the circuit set their own).
        "circuit_probe_interval": 0.1,
        "circuit_probe_max_interval": 0.4,
    }
    values.update(overrides)
    return Settings(**values)
