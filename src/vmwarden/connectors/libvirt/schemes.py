"""The URI schemes libvirt serves, in a module that imports nothing: the admission path
(``admission.py``) registers under them without loading libvirt-python (libvirtd holds the
domain's lock while its hook waits for the answer; nothing there may call back into it)."""

from __future__ import annotations

SCHEMES = (
    "test", "test+unix", "test+tcp", "test+tls", "test+ssh",
    "qemu", "qemu+ssh", "qemu+tcp", "qemu+tls", "qemu+unix", "qemu+libssh2",
    "qemu+libssh", "qemu+ext", "lxc", "lxc+ssh", "lxc+tcp", "lxc+tls", "lxc+unix",
    "xen", "xen+ssh", "ch", "bhyve", "vz", "openvz", "vbox",
)  # fmt: skip
