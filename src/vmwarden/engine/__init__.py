"""Jobs: one sweep (scan), the demo estate and test-driver fleets."""
