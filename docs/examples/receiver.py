"""A partner's receiver to try callbackhub locally: verifies every delivery, prints it, answers.

    python docs/examples/receiver.py --port 9000 1=whsec_... 2=whsec_... 3=whsec_...

Each callback (one per notification type) has its own signing secret, so the receiver picks the
secret by the ``notification-type-id`` header and verifies with the ``standardwebhooks``
package (``pip install standardwebhooks``). A delivery it has seen before (same ``webhook-id``:
a retry or a redelivery) is printed as a repeat and acknowledged again, not processed twice.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

from standardwebhooks import Webhook, WebhookVerificationError


def parse_secrets(pairs: list[str]) -> dict[str, Webhook]:
    """``TYPE=whsec_...`` pairs: the verifier for each notification type."""
    verifiers = {}
    for pair in pairs:
        notification_type, _, secret = pair.partition("=")
        if not secret.startswith("whsec_"):
            raise SystemExit(f"expected TYPE=whsec_..., got {pair!r}")
        verifiers[notification_type] = Webhook(secret)
    return verifiers


class Receiver(BaseHTTPRequestHandler):
    verifiers: ClassVar[dict[str, Webhook]] = {}
    seen: ClassVar[set[str]] = set()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        notification_type = self.headers.get("notification-type-id", "")
        webhook_id = self.headers.get("webhook-id", "")
        verifier = self.verifiers.get(notification_type)
        try:
            if verifier is None:
                raise WebhookVerificationError(f"no secret for type {notification_type!r}")
            payload = verifier.verify(body, dict(self.headers))  # signature and timestamp
        except WebhookVerificationError as error:
            print(f"REFUSED type {notification_type} {webhook_id}: {error}", flush=True)
            self._answer(400)
            return
        if webhook_id in self.seen:  # at least once: a retry or a redelivery
            print(f"repeat   type {notification_type} {webhook_id} (already processed)", flush=True)
        else:
            self.seen.add(webhook_id)
            print(
                f"verified type {notification_type} {webhook_id} {json.dumps(payload)}", flush=True
            )
        self._answer(204)

    def _answer(self, status: int) -> None:
        self.send_response(status)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the lines above say what matters."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("secrets", nargs="+", metavar="TYPE=whsec_...")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    Receiver.verifiers = parse_secrets(args.secrets)
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"receiver listening on http://{args.host}:{args.port}/", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
