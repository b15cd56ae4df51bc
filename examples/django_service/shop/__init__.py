"""The example app: a view reading settings that change."""
