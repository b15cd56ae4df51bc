"""Observability: which instance runs which version (inventory, currency), Prometheus metrics, the audit
log and history.
"""
