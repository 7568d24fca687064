"""Wijkbrug: routes GP messages to the preferred home-care provider over encrypted Matrix."""

__version__ = "0.1.0"
