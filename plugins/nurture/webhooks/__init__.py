"""Signed provider webhooks (SendGrid events, Twilio callbacks), stored raw in the warehouse.

`create_app` is imported on first use: the Airflow plugin imports this package whenever
Airflow loads plugins (DAG parsing included), which must not pull in database drivers.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):
    if name == "create_app":
        from nurture.webhooks.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
