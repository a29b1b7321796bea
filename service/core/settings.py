"""All configuration of callbackhub: one settings class, environment prefix ``CALLBACKHUB_``."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLBACKHUB_", extra="ignore")

    # Where the data lives.
    database_url: SecretStr | None = None
    data_dir: Path = Path(".callbackhub")
    database_pool_min: int = Field(default=2, ge=1, le=100)
    database_pool_max: int = Field(default=10, ge=1, le=500)
    database_connect_timeout: float = Field(default=60.0, gt=0, le=3600)

    # HTTP API.
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    # Group commit: how many transactions storing echoed notifications may be open at once per
    # API process. CALLBACKHUB_INGEST_WRITERS is its former name, still read.
    notification_writers: int = Field(
        default=2,
        ge=1,
        le=64,
        validation_alias=AliasChoices(
            "notification_writers",
            "CALLBACKHUB_NOTIFICATION_WRITERS",
            "CALLBACKHUB_INGEST_WRITERS",
        ),
    )
    # uvloop (where it is installed: Linux and macOS) or the standard library's event loop.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Tokens.
    jwt_secret: SecretStr | None = None
    jwt_public_key: SecretStr | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None

    # Secrets at rest (service.core.encryption): id:base64key,... (the first seals), or a file.
    encryption_keys: SecretStr | None = None
    encryption_keys_file: Path | None = None

    # The audit trail keeps this many days.
    audit_retention_days: float = Field(default=400.0, gt=0)

    # The partner portal: the base of the links it hands out (default http://HOST:PORT), and who
    # may frame it (a CSP frame-ancestors source list).
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    portal_frame_ancestors: str = Field(default="'none'", pattern=r"^[^;,\r\n]+$")

    # Logging.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"

    # Delivery.
    delivery_timeout: float = Field(default=10.0, gt=0, le=300)
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    retry_jitter: float = Field(default=0.2, ge=0, le=0.5)
    disable_after: float = Field(default=5 * 24 * 3600.0, gt=0)
    max_in_flight: int = Field(default=256, ge=1, le=10000)
    max_per_callback: int = Field(default=8, ge=1, le=1000)
    poll_interval: float = Field(default=1.0, gt=0, le=60)
    # A claimed delivery is leased for the delivery timeout plus this margin; a worker that dies
    # leaves leases that expire this long after the request would have timed out.
    lease_margin: float = Field(default=30.0, ge=1, le=3600)
    claim_batch: int = Field(default=100, ge=1, le=5000)
    shutdown_grace: float = Field(default=10.0, ge=0, le=600)
    secret_rotation_overlap: float = Field(default=24 * 3600.0, ge=0)
    allowed_networks: Annotated[
        tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...], NoDecode
    ] = ()
    require_https: bool = False
    # Every attempt and token request goes through this forward proxy (CONNECT for https);
    # credentials in the URL are sent as Proxy-Authorization. See service.core.egress.
    egress_proxy: SecretStr | None = None
    # Callback health (dispatcher/circuit.py): this many consecutive failed attempts open a
    # callback's circuit; one probe after CIRCUIT_PROBE_INTERVAL seconds, the wait doubling up
    # to CIRCUIT_PROBE_MAX_INTERVAL while probes fail.
    circuit_failures: int = Field(default=5, ge=1, le=1000)
    circuit_probe_interval: float = Field(default=30.0, gt=0, le=86400)
    circuit_probe_max_interval: float = Field(default=600.0, gt=0, le=86400)
    # notification.failing goes to the operator webhook when a notification has failed this often.
    failing_after: int = Field(default=4, ge=1, le=1000)
    idempotency_ttl: float = Field(default=24 * 3600.0, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    retention_interval: float = Field(default=60.0, gt=0, le=86400)

    # Observability.
    metrics_per_partner: bool = False
    # `callbackhub dispatcher` alone serves /metrics on this port when it is set.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(float(part) for part in value.split(",") if part.strip())
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("must be a comma-separated list of non-negative seconds")
        return value

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _parse_networks(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [part.strip() for part in value.split(",") if part.strip()]
            return tuple(ipaddress.ip_network(part, strict=False) for part in parts)
        return value

    @field_validator("egress_proxy")
    @classmethod
    def _check_proxy(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = proxy_url_problem(value.get_secret_value())
            if problem is not None:
                raise ValueError(problem)
        return value

    @property
    def base_url(self) -> str:
        """Where people reach this service: the public URL, or the address it listens on."""
        if self.public_url is not None:
            return self.public_url.rstrip("/")
        return f"http://{self.host}:{self.port}"

    @property
    def max_attempts(self) -> int:
        """The first attempt plus one per entry of the retry schedule."""
        return len(self.retry_schedule) + 1


def proxy_url_problem(text: str) -> str | None:
    """Why ``text`` is not a forward proxy URL (``http(s)://[user:password@]host[:port]``).
    The message never repeats the URL: it may hold the proxy's password."""
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        return "must be a URL such as http://proxy.internal:3128"
    if url.scheme not in ("http", "https") or not url.hostname:
        return "must be an http:// or https:// URL with a host, such as http://proxy.internal:3128"
    if url.path not in ("", "/") or url.query or url.fragment:
        return "must be the proxy's address only, without a path or a query"
    return None


class ConfigurationError(Exception):
    """The configuration is invalid."""


def load_settings(**overrides: object) -> Settings:
    """Read the settings, turning a validation error into one line that names the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]).upper() if first["loc"] else "?"
        variable = field if field.startswith("CALLBACKHUB_") else f"CALLBACKHUB_{field}"
        raise ConfigurationError(f"invalid configuration: {variable}: {first['msg']}") from None
