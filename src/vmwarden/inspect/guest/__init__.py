"""Readers of guest files: one module per fact, each a few small functions over :class:`GuestFiles`.

The readers parse the guest's own files (os-release, dpkg status, passwd/shadow, systemd
wants links, sshd_config, host keys, chrony/ntp/timesyncd, network config) from the guest
root that dissect.target mounted. They never touch the host: every path goes through
:class:`~vmwarden.inspect.guest.files.GuestFiles`, i.e. through the guest filesystem, where
dissect resolves symlinks (absolute ones included) inside the guest and detects loops.

A reader raises :class:`~vmwarden.inspect.guest.files.GuestReadError` when its fact cannot
be read; :mod:`vmwarden.inspect.facts` records that as ``None`` plus a reason in ``errors``.
"""

from __future__ import annotations
