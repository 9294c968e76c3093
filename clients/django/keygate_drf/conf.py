"""The ``KEYGATE`` setting.

KEYGATE = {
    # The gateway's key set, by URL (fetched and cached for 300 s, as the gateway's
    # Cache-Control says) or given as a dict ({"keys": [...]}); one of the two.
    "JWKS_URL": "https://keygate.example.com/.well-known/jwks.json",
    "JWKS": None,
    # The assertion's iss: the gateway's PUBLIC_URL.
    "ISSUER": "https://keygate.example.com",
    # The assertion's aud: the gateway's ORIGIN_URL (this API, as the gateway calls it).
    "AUDIENCE": "https://api.example.com",
    # The URL the gateway forwards to, when this server sits behind another proxy that changes
    # the host or scheme Django sees: htu is then checked as ORIGIN_URL + the request's path and
    # query. Default: the request's own absolute URL (request.build_absolute_uri()).
    "ORIGIN_URL": None,
    # Seconds of clock difference allowed on iat and exp.
    "LEEWAY": 5,
    # A Django cache alias: each assertion (its jti) is then accepted once. Without it, a captured
    # assertion can be replayed to the very same method and URL within its minute.
    "REPLAY_CACHE": None,
}
"""

from dataclasses import dataclass
from typing import Optional

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEFAULT_LEEWAY = 5


@dataclass(frozen=True)
class KeygateSettings:
    jwks_url: Optional[str]
    jwks: Optional[dict]
    issuer: str
    audience: str
    origin_url: Optional[str]
    leeway: int
    replay_cache: Optional[str]


def keygate_settings() -> KeygateSettings:
    conf = getattr(settings, "KEYGATE", None)
    if not isinstance(conf, dict):
        raise ImproperlyConfigured("settings.KEYGATE must be a dict (see keygate_drf.conf)")
    if bool(conf.get("JWKS_URL")) == bool(conf.get("JWKS")):
        raise ImproperlyConfigured("KEYGATE needs exactly one of JWKS_URL and JWKS")
    for name in ("ISSUER", "AUDIENCE"):
        if not conf.get(name):
            raise ImproperlyConfigured(f"KEYGATE needs {name}")
    origin = conf.get("ORIGIN_URL")
    return KeygateSettings(
        jwks_url=conf.get("JWKS_URL"),
        jwks=conf.get("JWKS"),
        issuer=conf["ISSUER"],
        audience=conf["AUDIENCE"],
        origin_url=origin.rstrip("/") if origin else None,
        leeway=int(conf.get("LEEWAY", DEFAULT_LEEWAY)),
        replay_cache=conf.get("REPLAY_CACHE"),
    )
