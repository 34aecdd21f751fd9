"""The Jinja2 environment: package templates, autoescaping on, filters for operators' units."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from vmwarden.web.estate import as_datetime
from vmwarden.web.evidence import evidence_rows


def when(value: Any) -> str:
    """``2026-11-23 07:42 UTC``: one clock (UTC) for every time on every page."""
    at = as_datetime(value)
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if at else "—"


def ago(value: Any, now: datetime | None = None) -> str:
    """``3 d ago``: how stale something is, at a glance."""
    at = as_datetime(value)
    if at is None:
        return "—"
    seconds = int(((now or datetime.now(UTC)) - at).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def mib(kib: Any) -> str:
    if kib is None:
        return "—"
    value = int(kib) / 1024
    return f"{value / 1024:.1f} GiB" if value >= 1024 else f"{value:.0f} MiB"


def size(value: Any) -> str:
    if value is None:
        return "—"
    n = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def short_id(value: Any) -> str:
    text = str(value or "")
    return text[:8] if len(text) > 12 else text


class Renderer:
    def __init__(self) -> None:
        self.env = Environment(
            loader=PackageLoader("vmwarden.web", "templates"),
            autoescape=select_autoescape(["html"], default=True),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(when=when, ago=ago, mib=mib, size=size, short_id=short_id)
        self.env.globals["evidence_rows"] = evidence_rows

    def render(self, template: str, **ctx: Any) -> str:
        return self.env.get_template(template).render(**ctx)
