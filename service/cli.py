"""The ``callbackhub`` command: serve, dispatcher, migrate, partners, token, keys.

Every flag falls back to an environment variable, named in its ``--help``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import uuid
from collections.abc import Sequence
from typing import Any

from service.api.tokens import SCOPES, ensure_jwt_secret, mint_token
from service.core.audit import AuditAction, cli_actor
from service.core.database import DatabaseUnavailable, Pool, database_url, open_pool
from service.core.encryption import ensure_encryption_keys, generate_key, load_keyring
from service.core.errors import Problem
from service.core.logs import configure_logging
from service.core.migrations import migrate
from service.core.settings import ConfigurationError, Settings, load_settings
from service.core.stored_secrets import prepare_stored_secrets

log = logging.getLogger("callbackhub")


def _env(name: str) -> str | None:
    return os.environ.get(f"CALLBACKHUB_{name}")


def _flag(parser: argparse.ArgumentParser, flag: str, env: str, help: str, **kw: Any) -> None:
    kw.setdefault("default", _env(env))
    parser.add_argument(flag, help=f"{help} (env CALLBACKHUB_{env})", **kw)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="callbackhub", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (and by default the dispatcher)")
    _flag(serve, "--host", "HOST", "address to listen on")
    # No env default here: argparse would parse a bad CALLBACKHUB_PORT itself, with a usage
    # dump that does not name the variable; the settings read and check it instead.
    _flag(serve, "--port", "PORT", "port to listen on", type=int, default=None)
    serve.add_argument(
        "--no-dispatcher",
        action="store_true",
        default=_env("NO_DISPATCHER") in ("1", "true"),
        help="serve the API only; run `callbackhub dispatcher` elsewhere"
        " (env CALLBACKHUB_NO_DISPATCHER)",
    )
    _flag(serve, "--workers", "WORKERS", "API processes sharing the port (SO_REUSEPORT)", type=int)

    commands.add_parser("dispatcher", help="deliver notifications, without the HTTP API")
    commands.add_parser("migrate", help="apply pending database migrations and exit")

    partners = commands.add_parser("partners", help="manage partners")
    partner_commands = partners.add_subparsers(dest="partners_command", required=True)
    add = partner_commands.add_parser("add", help="create a partner")
    _flag(
        add, "--name", "PARTNER_NAME", "the partner's name", required=_env("PARTNER_NAME") is None
    )
    _flag(add, "--id", "PARTNER_ID", "its partnerUniqueId (random by default)", type=uuid.UUID)
    partner_commands.add_parser("list", help="list partners")

    token = commands.add_parser("token", help="print a signed HS256 JWT")
    _flag(
        token,
        "--scope",
        "TOKEN_SCOPE",
        f"space-separated scopes, of: {' '.join(sorted(SCOPES))}",
        required=_env("TOKEN_SCOPE") is None,
    )
    _flag(token, "--partner", "TOKEN_PARTNER", "bind the token to this partner", type=uuid.UUID)
    _flag(
        token,
        "--ttl",
        "TOKEN_TTL",
        "lifetime in seconds (default 3600)",
        type=int,
        default=_env("TOKEN_TTL") or 3600,
    )

    link = commands.add_parser("portal-link", help="print a single-use partner portal link")
    whose = link.add_mutually_exclusive_group(required=True)
    whose.add_argument("--partner", type=uuid.UUID, help="the partner whose portal it opens")
    whose.add_argument("--operator", action="store_true", help="the operator view instead")
    link.add_argument("--read-only", action="store_true", help="a link that can change nothing")
    link.add_argument(
        "--ttl", type=int, default=3600, help="seconds until the link expires (60-604800)"
    )

    keys = commands.add_parser("keys", help="the keys that seal stored secrets")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    generate = key_commands.add_parser("generate", help="print a new key (id:base64key)")
    generate.add_argument("--id", help="the key's id (random by default)")
    key_commands.add_parser(
        "rotate",
        help="re-seal every stored secret under the first of CALLBACKHUB_ENCRYPTION_KEYS"
        " (safe while the service runs, once every process has that key)",
    )
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {
        name: getattr(args, name)
        for name in ("host", "port")
        if getattr(args, name, None) is not None
    }
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    return settings


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = _settings(args)
        return _run(args, settings)
    except ConfigurationError as error:
        print(error, file=sys.stderr)
        return 2
    except DatabaseUnavailable as error:
        print(f"callbackhub: {error}", file=sys.stderr)
        return 1
    except Problem as error:  # e.g. `partners add` with a taken id or an invalid name
        fields = "".join(f"; {e['field']}: {e['message']}" for e in error.errors or [])
        print(f"callbackhub: {error.detail}{fields}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "token":
        return _token(args, settings)
    if args.command == "keys" and args.keys_command == "generate":
        print(generate_key(args.id))
        return 0
    settings, key_created = ensure_encryption_keys(settings)
    load_keyring(settings)  # a missing or malformed key stops here, before anything starts
    if key_created:
        print(
            f"callbackhub: generated the key that seals stored secrets in "
            f"{settings.encryption_keys_file}; back it up with the data folder",
            file=sys.stderr,
        )
    if args.command == "serve":
        from service.server import serve

        return serve(settings, with_dispatcher=not args.no_dispatcher, workers=args.workers or 1)
    if args.command == "dispatcher":
        from dispatcher.worker import run_standalone

        # Like serve: a dispatcher started before the schema exists would never deliver.
        dsn = database_url(settings)
        asyncio.run(_apply_migrations(dsn, settings))
        return run_standalone(settings, dsn)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    if args.command == "partners":
        return asyncio.run(_partners(args, settings))
    if args.command == "portal-link":
        return asyncio.run(_portal_link(args, settings))
    return asyncio.run(_rotate_keys(settings))


async def _portal_link(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.parsing import validate
    from service.core import portal_access
    from service.core.schemas import PortalLinkRequest

    access = "read" if args.read_only else "manage"
    body = validate(PortalLinkRequest, {"access": access, "expiresIn": args.ttl})
    async with open_pool(database_url(settings), settings) as pool:
        await _prepare(pool, settings)
        code, expires_at = await portal_access.issue_link(
            pool,
            None if args.operator else args.partner,
            portal_access.Access(body.access),
            body.expires_in,
            cli_actor("portal-link"),
        )
    print(f"{settings.base_url}/portal/login?code={code}")
    print(f"single use, expires {expires_at.isoformat()}", file=sys.stderr)
    return 0


async def _prepare(pool: Pool, settings: Settings) -> list[int]:
    """Apply pending migrations, then seal any secret still in clear and check the keys."""
    async with pool.acquire() as connection:
        applied = await migrate(connection)
    await prepare_stored_secrets(pool, load_keyring(settings))
    return applied


async def _apply_migrations(dsn: str, settings: Settings) -> list[int]:
    async with open_pool(dsn, settings) as pool:
        return await _prepare(pool, settings)


async def _migrate(settings: Settings) -> int:
    async with open_pool(database_url(settings), settings) as pool:
        applied = await _prepare(pool, settings)
    print(f"applied {len(applied)} migration(s)" + (f": {applied}" if applied else ""))
    return 0


async def _rotate_keys(settings: Settings) -> int:
    from tqdm import tqdm

    from service.core import audit, stored_secrets

    keyring = load_keyring(settings)
    async with open_pool(database_url(settings), settings) as pool:
        await _prepare(pool, settings)
        to_do = await stored_secrets.count_to_reseal(pool, keyring)
        with tqdm(total=to_do, unit="callback", desc=f"re-sealing under {keyring.primary}") as bar:
            resealed = await stored_secrets.reseal(pool, keyring, progress=bar.update)
        left = await stored_secrets.count_to_reseal(pool, keyring)
        async with pool.acquire() as connection:
            details = {"keyId": keyring.primary, "resealed": resealed, "left": left}
            await audit.record(
                connection,
                audit.cli_actor("keys rotate"),
                AuditAction.KEYS_ROTATED,
                details=details,
            )
    print(f"re-sealed {resealed} callback(s) under key {keyring.primary!r}; {left} left")
    if left:
        print(
            "some secrets changed while this ran and were sealed under another key: give "
            "every callbackhub process the new key first (CALLBACKHUB_ENCRYPTION_KEYS), then "
            "run it again",
            file=sys.stderr,
        )
        return 1
    return 0


async def _partners(args: argparse.Namespace, settings: Settings) -> int:
    from service.api.parsing import validate
    from service.core import partners
    from service.core.schemas import PartnerCreate

    async with open_pool(database_url(settings), settings) as pool:
        await _prepare(pool, settings)
        if args.partners_command == "add":
            body = validate(PartnerCreate, {"name": args.name, "partnerUniqueId": args.id})
            partner = await partners.create_partner(
                pool, body.name, body.partner_unique_id, cli_actor("partners add")
            )
            print(f"{partner.partner_unique_id}\t{partner.name}")
            return 0
        page = await partners.list_partners(pool, 0, 100)
        for item in page.items:
            print(f"{item.partner_unique_id}\t{item.name}\t{item.created_at.isoformat()}")
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    settings, _ = ensure_jwt_secret(settings)
    if settings.jwt_secret is None:
        print(
            "callbackhub token signs with CALLBACKHUB_JWT_SECRET (HS256); with only "
            "CALLBACKHUB_JWT_PUBLIC_KEY set, tokens come from the holder of the private key",
            file=sys.stderr,
        )
        return 2
    unknown = set(args.scope.split()) - SCOPES
    if unknown:
        print(f"unknown scope(s): {' '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    print(mint_token(settings, args.scope.split(), args.partner, args.ttl))
    return 0
