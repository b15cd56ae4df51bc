"""Settings of the example project: only what Django needs, plus where the config server is."""

import os

from config_client.variables import configured_servers

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
# The server: CONFIG_CLIENT_SERVERS (default http://127.0.0.1:8888, the address `make run` serves).
CONFIG_SERVER = {
    "url": configured_servers(default="http://127.0.0.1:8888"),
    "app": "orders",
    "profiles": os.environ.get("PROFILES", "default"),
    "cache_dir": os.environ.get("CONFIG_CACHE_DIR", ".data/client-cache"),
}
