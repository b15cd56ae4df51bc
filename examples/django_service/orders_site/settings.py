"""Settings of the example project: only what Django needs, plus where the config server is."""

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["config_client.django", "shop"]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "orders_site.urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True

# The config client: started once per process when Django is ready. Any other ConfigClient
# argument may be given here too (token is best left to the CONFIG_CLIENT_TOKEN variable).
CONFIG_SERVER = {
    "url": os.environ.get("CONFIG_SERVER_URL", "http://127.0.0.1:8888"),
    "app": "orders",
    "profiles": os.environ.get("PROFILES", "default"),
    "cache_dir": os.environ.get("CONFIG_CACHE_DIR", ".data/client-cache"),
}
