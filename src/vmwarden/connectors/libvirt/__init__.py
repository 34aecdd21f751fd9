"""The libvirt connector: pure XML readers/writers plus one connection class.

``domxml`` and ``nicxml`` never touch libvirt (pure functions over XML text);
``connection`` holds the only code that calls libvirt-python.
"""

from __future__ import annotations
