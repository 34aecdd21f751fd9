"""SCAP content (OVAL, XCCDF) evaluated offline over a guest's filesystem.

Layer: after ``inspect`` (it reads through :class:`vmwarden.inspect.guest.files.GuestFiles`,
so the same code runs in the sandboxed worker over dissect and, in tests, over a directory).
"""
