"""The VMware vSphere connector (vCenter through pyvmomi): URI, session, inventory.

A preview slice of issue 13: inventory only. Disks are listed with their datastore paths
but not read (they are unknown with the reason); isolation and events are not there yet.
"""
