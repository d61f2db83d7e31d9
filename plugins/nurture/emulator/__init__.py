"""A local stand-in for SendGrid and Twilio, so programs can send for real without sending.

It speaks the providers' own HTTP APIs (auth, validation, error shapes, response bodies), so
the real SDKs talk to it unchanged, and it records every accepted message in an outbox.
"""

from __future__ import annotations

from nurture.emulator.app import create_app
from nurture.emulator.events import new_event_signing_key, post_inbound
from nurture.emulator.server import run_in_thread, serve
from nurture.emulator.store import OutboxStore

__all__ = ["OutboxStore", "create_app", "new_event_signing_key", "post_inbound",
           "run_in_thread", "serve"]
