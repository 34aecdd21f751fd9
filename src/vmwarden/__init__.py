"""vmwarden: find every VM and disk image, look inside, judge against policy, act."""

__version__ = "0.1.0"
