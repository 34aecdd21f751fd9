"""The dashboard: server-rendered pages over the store, for operators and auditors.

Interface with the API (``vmwarden.api``), as used here:

- ``create_app(settings)`` includes ``build_router(settings)`` at the root of the app (pages
  ``/``, ``/login``, ``/logout``, ``/vms``, ``/vms/{id}``, ``/findings``, ``/images``,
  ``/quarantine``, ``/exceptions``, ``/templates``, ``/audit``, ``/sessions`` (admins),
  ``/static/{name}``; form posts ``/vms/{id}/quarantine``, ``/quarantine/{id}/release``,
  ``/findings/{id}/acknowledge``, ``/exceptions``, ``/exceptions/{id}/approve|reject``,
  ``/templates``, ``/sessions/{id}/end``); the API lives under ``/api``.
  ``app.state.vmwarden`` (``AppState``) holds the store, the settings (policy, image dirs)
  and the connection pool.
- Sign-in, sessions and CSRF tokens are :mod:`vmwarden.api.auth`'s (``sign_in``,
  ``login_session``, ``session_user``, ``csrf_token``, ``check_csrf``); see
  :mod:`vmwarden.web.http` for how pages use them and :mod:`vmwarden.web.auth` for roles.
"""

from vmwarden.web.router import build_router

__all__ = ["build_router"]
