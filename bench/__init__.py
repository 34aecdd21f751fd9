"""``make bench``: vmwarden measured side by side with its floor and with what users run instead."""
