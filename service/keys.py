"""Typed keys for what the application holds (aiohttp ``AppKey``)."""

from __future__ import annotations

from aiohttp import web

from service.auth import TokenVerifier
from service.database import Pool
from service.ingest import Ingest
from service.settings import Settings

SETTINGS = web.AppKey("settings", Settings)
DSN = web.AppKey("dsn", str)
POOL = web.AppKey("pool", Pool)
VERIFIER = web.AppKey("verifier", TokenVerifier)
INGEST = web.AppKey("ingest", Ingest)
