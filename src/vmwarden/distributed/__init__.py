"""Scale-out on Dask distributed: disk reads run on the disks' own hosts (``vmwarden worker``).

Not imported by anything unless ``--scheduler`` is given or ``vmwarden worker`` runs, so
that the single-process default never loads Dask.
"""
