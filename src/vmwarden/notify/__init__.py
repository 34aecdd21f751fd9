"""Telling people: webhook, syslog (RFC 5424 / CEF), SMTP and OCSF JSON lines.

A failing receiver never blocks enforcement: ``Dispatcher.send`` records the failure and
returns; callers journal the outcome.
"""

from vmwarden.notify import receivers as _receivers  # noqa: F401  (registers the notifiers)
from vmwarden.notify.base import Alert, Delivery, Dispatcher, notifiers

__all__ = ["Alert", "Delivery", "Dispatcher", "notifiers"]
