"""Opening keygate's key settings page for the signed-in user (docs/CONTRACT.md section 11): the
platform's backend asks the gateway for a single-use link, with the admin token, and redirects
the browser to it."""

import json
import urllib.request
from urllib.parse import urlsplit

from django.http import HttpResponseRedirect


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send the admin token to wherever it points.
    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def open_settings_session(*, gateway_url, admin_token, user_id, email, workspaces, permissions,
                          return_url=None, max_expiry_days=None, ttl_seconds=None, timeout=10):
    """POST /v1/settings-sessions; returns the single-use link (never log it)."""
    target = urlsplit(gateway_url)
    if target.scheme != "https" and target.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("gateway_url must be https (the admin token travels with the call)")
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
    with _opener.open(req, timeout=timeout) as resp:
        if resp.status != 201:
            raise ValueError(f"the gateway answered {resp.status}")
        return json.load(resp)["url"]


def redirect_to_settings(request, **kwargs):
    """A redirect to the link (a view of the platform's calls this for request.user)."""
    return HttpResponseRedirect(open_settings_session(**kwargs))
