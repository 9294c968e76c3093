"""Keys made by the real djangorestframework-api-key package, then `dumpdata`, for the
migration test (tests/e2e/migration.test.mjs).

Usage: python make_keys.py OUT_DIR

Writes OUT_DIR/dump.json (what `manage.py dumpdata rest_framework_api_key.APIKey` prints) and
OUT_DIR/keys.json (the plaintext keys, by name: test-time secrets, in a temporary folder, never
printed). A throwaway Django project in memory, its database a SQLite file in OUT_DIR.

The keys:
- `v3-a`, `v3-b`: `APIKey.objects.create_key`, as the package's 3.x releases store them
  (`sha512$$<hex>`);
- `v2-pbkdf2`: stored the way its 2.x releases did, with Django's default hasher
  (`make_password`: PBKDF2-SHA256, 1,000,000 iterations in Django 5.2);
- `v2-pbkdf2-low`: the same with 50,000 iterations (within WebCrypto's production limit);
- `revoked`: revoked in the platform; `expired`: expired in the platform.
"""

import json
import os
import sys
from datetime import timedelta

import django
from django.conf import settings

out = sys.argv[1]
settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-not-secret",
    USE_TZ=True,
    INSTALLED_APPS=[
        "django.contrib.contenttypes",
        "django.contrib.auth",
        "rest_framework",
        "rest_framework_api_key",
    ],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(out, "db.sqlite3"),
        }
    },
)
django.setup()

from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework_api_key.crypto import KeyGenerator  # noqa: E402
from rest_framework_api_key.models import APIKey  # noqa: E402

call_command("migrate", verbosity=0)

keys = {}
for name in ("v3-a", "v3-b"):
    _, key = APIKey.objects.create_key(name=name)
    keys[name] = key


class LowIterations(PBKDF2PasswordHasher):
    iterations = 50_000


def legacy(name, hasher=None, **fields):
    """A key stored as the package's 2.x releases did: Django's password hasher."""
    key, prefix, _ = KeyGenerator().generate()
    hashed = make_password(key, hasher=hasher or "default")
    APIKey.objects.create(id=f"{prefix}.{hashed}"[:150], prefix=prefix, hashed_key=hashed, name=name, **fields)
    keys[name] = key


legacy("v2-pbkdf2")
legacy("v2-pbkdf2-low", hasher=LowIterations())

_, keys["revoked"] = APIKey.objects.create_key(name="revoked", revoked=True)
_, keys["expired"] = APIKey.objects.create_key(
    name="expired", expiry_date=timezone.now() - timedelta(days=1)
)

call_command("dumpdata", "rest_framework_api_key.APIKey", output=os.path.join(out, "dump.json"))
with open(os.path.join(out, "keys.json"), "w") as f:
    json.dump(keys, f)
