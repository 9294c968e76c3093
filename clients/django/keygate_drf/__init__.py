"""Django REST framework support for APIs behind keygate.

keygate (an API-key gateway) adds a signed ``Keygate-Assertion`` (an ES256 JWT) to every request
it forwards; this package verifies it (``KeygateAssertionAuthentication``), checks keygate's
permissions and workspaces (``HasKeygatePermission``), mints assertions for the platform's own
tests (``keygate_drf.testing``) and opens a user's key settings page (``keygate_drf.views``).
Settings: the ``KEYGATE`` dict (see ``keygate_drf.conf``).
"""

from .authentication import KeygateAssertionAuthentication, KeygateUser
from .permissions import HasKeygatePermission

__all__ = ["KeygateAssertionAuthentication", "KeygateUser", "HasKeygatePermission"]
__version__ = "0.1.0"
