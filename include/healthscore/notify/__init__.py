"""notify: the one outbox every notification goes through, and its delivery.

``outbox``: ``OutboxWriter`` writes a message once per ``dedupe_key`` to the outbox file and/or the
``notifications_outbox`` table; ``OutboxNotifier`` is the Airflow ``BaseNotifier`` around it. What a message
says is built by its domain (``quality.notify``, ``playbooks.notifiers``). ``delivery``: the outbox table handed
to email and Slack.
"""
