"""Typed keys for what the application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from service.api.tokens import TokenVerifier
from service.core.database import Pool
from service.core.encryption import Keyring
from service.core.notifications import NotificationWriter
from service.core.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
POOL = web.AppKey("pool", Pool)
VERIFIER = web.AppKey("verifier", TokenVerifier)
NOTIFICATION_WRITER = web.AppKey("notification_writer", NotificationWriter)
KEYRING = web.AppKey("keyring", Keyring)
