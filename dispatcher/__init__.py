"""Delivery: claim due notifications, send them signed, record the outcome, schedule retries."""
