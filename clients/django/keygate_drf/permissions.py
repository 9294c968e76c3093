"""``HasKeygatePermission``: keygate's permission vocabulary and the workspace in the URL."""

from rest_framework import permissions

WILDCARD = "*"


def grants(held, permission):
    """Whether a key's permissions include ``permission`` (directly or by ``*``)."""
    return WILDCARD in held or permission in held


def covers(held, workspace):
    """Whether a key's workspaces include ``workspace`` (directly or by ``*``)."""
    return WILDCARD in held or workspace in held


class HasKeygatePermission(permissions.BasePermission):
    """Allows a request whose assertion grants the view's ``keygate_permission`` (for instance
    ``"jobs:run"``; none: any authenticated key) and covers the workspace of the URL keyword
    ``keygate_workspace_kwarg`` (default ``"workspace_id"``) when the URL has one. keygate
    already checked both; this is the origin's own check, in depth."""

    message = "the key does not grant this"

    def has_permission(self, request, view):
        claims = request.auth
        if not isinstance(claims, dict) or not getattr(request.user, "is_authenticated", False):
            return False
        needed = getattr(view, "keygate_permission", None)
        if needed and not grants(claims.get("permissions", []), needed):
            return False
        kwarg = getattr(view, "keygate_workspace_kwarg", "workspace_id")
        workspace = (getattr(view, "kwargs", None) or {}).get(kwarg)
        return workspace is None or covers(claims.get("workspaces", []), workspace)
