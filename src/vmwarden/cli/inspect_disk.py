"""``vmwarden inspect`` of a disk a connector serves (``ebs:snap-…``), not a file here.

The connector opens the disk by ranges (``Connector.open_disk``); its header is read through
that reader and the sandboxed worker is served its bytes (``inspect.served``), exactly as a
sweep reads another host's disk. The output has the shape of a file's (``path``, ``format``,
``virtual_size``, ``guest`` …) plus ``reads``: what the reader fetched to get there.
"""

from __future__ import annotations

import os
from typing import Any

from vmwarden.connectors import open_connector
from vmwarden.errors import ConnectorError, InspectError
from vmwarden.inspect.facts import new_fingerprint_key
from vmwarden.inspect.header import read_image_info
from vmwarden.inspect.ranged_chain import RangedImage
from vmwarden.inspect.sandbox import InspectorPool

#: Disk names that are no file: prefix → the URI scheme of the connector that serves them.
SCHEMES = {"ebs:": "aws"}


def served_by(name: str) -> str | None:
    """The connector scheme for ``name`` (``aws`` for ``ebs:snap-…``), None for a file."""
    return next((scheme for prefix, scheme in SCHEMES.items() if name.startswith(prefix)), None)


def default_uri(scheme: str) -> str:
    """The connection when ``--connect`` is not given: ``aws://$AWS_REGION``."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if scheme == "aws" and region:
        return f"aws://{region}"
    raise ConnectorError(
        "no region for an EBS snapshot",
        hint="pass --connect aws://REGION or set AWS_REGION",
    )


def inspect_served(name: str, uri: str, *, timeout: float) -> dict[str, Any]:
    """Facts of the disk ``name`` read through the connector of ``uri``.

    Raises:
        ConnectorError: the connection or the disk cannot be opened (one line, exit 2).
    """
    with open_connector(uri) as conn:
        reader = conn.open_disk(name)
        try:
            info = read_image_info(RangedImage(reader))  # type: ignore[arg-type]
        except InspectError as exc:
            raise ConnectorError(f"cannot read the header of {name}: {exc}") from None
        result: dict[str, Any] = {
            "path": name,
            "format": info.format,
            "virtual_size": info.virtual_size,
            "size": reader.size,
            "backing": info.backing,
            "backing_format": info.backing_format,
            "encrypted": info.encrypted,
            "data_file": info.data_file,
            "digest": None,  # a whole-disk hash would read every block: not done
            "identity": reader.identity(),
        }
        try:
            pool = InspectorPool(
                workers=1, timeout=timeout, allowed_dirs=[], fingerprint_key=new_fingerprint_key()
            )
            with pool:
                facts = pool.inspect_ranged(
                    name, [reader], [info.format], encrypted=bool(info.encrypted)
                )
        except InspectError as exc:
            result["guest"], result["guest_error"] = None, str(exc)
        else:
            result["guest"] = facts.to_dict()
        result["reads"] = {
            "requests": getattr(reader, "requests", None),
            "transferred": getattr(reader, "transferred", None),
            "snapshot": reader.identity().get("snapshot"),
        }
        result["chain"] = [{"path": name, "format": info.format, "type": "volume", "error": None}]
    return result
