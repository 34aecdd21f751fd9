"""The dashboard: server-rendered pages over the store, for operators and auditors.

Interface with the API (``vmwarden.api``), as this package expects it:

- ``create_app(settings)`` includes ``build_router(settings)`` at the root of the app
  (pages ``/``, ``/login``, ``/logout``, ``/vms``, ``/vms/{id}``, ``/findings``, ``/images``,
  ``/quarantine``, ``/quarantine/{id}/release``, ``/audit``, ``/static/{name}``) and sets
  ``app.state.store`` to the open :class:`~vmwarden.store.Store`.
- ``vmwarden.api.authenticate_token(store, token)`` returns the user (``.name``, ``.role``
  among ``auditor``/``operator``/``admin``) or None; the login page calls it once per sign-in.

Browser behaviour: see :mod:`vmwarden.web.sessions` (cookie, CSRF) and
:mod:`vmwarden.web.auth` (which role may do what).
"""

from vmwarden.web.router import build_router

__all__ = ["build_router"]
