"""The Django app config: starts this process's ConfigClient when Django is ready."""

from __future__ import annotations

from django.apps import AppConfig


class ConfigClientConfig(AppConfig):
    """Starts the config client once per process (see `config_client.django`)."""

    name = "config_client.django"
    label = "config_client"
    verbose_name = "Config client"

    def ready(self) -> None:
        """Start the client from `settings.CONFIG_SERVER`."""
        from config_client.django import client

        client()
