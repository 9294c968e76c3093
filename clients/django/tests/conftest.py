import django
from django.conf import settings


def pytest_configure():
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        DATABASES={},
        ROOT_URLCONF="tests.urls",
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["keygate_drf.KeygateAssertionAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["keygate_drf.HasKeygatePermission"],
            "UNAUTHENTICATED_USER": None,
        },
        KEYGATE={"JWKS": {"keys": []}, "ISSUER": "https://keygate.test", "AUDIENCE": "http://testserver"},
    )
    django.setup()
