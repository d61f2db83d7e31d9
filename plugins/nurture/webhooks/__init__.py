"""Signed provider webhooks (SendGrid events, Twilio callbacks), stored raw in the warehouse."""

from __future__ import annotations

from nurture.webhooks.app import create_app

__all__ = ["create_app"]
