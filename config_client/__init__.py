"""Client library for services: fetches settings from the config server."""
