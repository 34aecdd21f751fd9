"""The libvirt qemu hook: a tiny client libvirtd runs before each VM start (``qemu``), and
its installer (``install``, with ``trust``: is everything the hook runs root's, and
``libvirtd``: reload, restart, and whether libvirtd uses the hook). ``qemu`` imports only the
standard library and nothing of vmwarden: ``install`` copies its source into the hook file,
which the system interpreter runs as root at every start."""
