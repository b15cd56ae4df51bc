"""Delivery: getting a version to the services that watch it: the watch hub and change detector, direct
long-poll answers, parked-poll caps, webhooks, cluster mode and the rollout runner.
"""
