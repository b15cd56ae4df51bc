"""Client library for services: fetches settings from the config server (grows with the live-updates issue)."""
