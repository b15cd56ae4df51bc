"""The example's app: listens to `config_changed`."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    """Connects the change receiver when Django is ready."""

    name = "shop"

    def ready(self) -> None:
        """Receive `config_changed` after every applied version."""
        from config_client.django import config_changed
        from shop import views

        config_changed.connect(views.record_change)
