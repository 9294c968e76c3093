"""Opening keygate's key settings page for the signed-in user (docs/CONTRACT.md section 11): the
platform's backend asks the gateway for a single-use link, with the admin token, and redirects
the browser to it."""

import json
import urllib.request

from django.http import HttpResponseRedirect


def open_settings_session(*, gateway_url, admin_token, user_id, email, workspaces, permissions,
                          return_url=None, max_expiry_days=None, ttl_seconds=None, timeout=10):
    """POST /v1/settings-sessions; returns the single-use link (never log it)."""
    body = {"user_id": user_id, "email": email, "workspaces": list(workspaces),
            "permissions": list(permissions)}
    for name, value in (("return_url", return_url), ("max_expiry_days", max_expiry_days),
                        ("ttl_seconds", ttl_seconds)):
        if value is not None:
            body[name] = value
    req = urllib.request.Request(
        gateway_url.rstrip("/") + "/v1/settings-sessions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)["url"]


def redirect_to_settings(request, **kwargs):
    """A redirect to the link (a view of the platform's calls this for request.user)."""
    return HttpResponseRedirect(open_settings_session(**kwargs))
