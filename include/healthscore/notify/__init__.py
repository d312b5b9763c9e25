"""Notifications: delivery of the outbox to email and Slack (``delivery``)."""
