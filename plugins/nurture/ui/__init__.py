"""Nurture's own pages in the Airflow UI (see nurture.ui.app)."""

from nurture.ui.app import create_ui_app

__all__ = ["create_ui_app"]
