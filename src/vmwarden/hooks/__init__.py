"""The libvirt qemu hook: a tiny client libvirtd runs before each VM start (``qemu``), and
its installer (``install``). ``qemu`` imports only the standard library: it runs on every
start, so its start-up time is the start-up time it adds."""
