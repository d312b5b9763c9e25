"""notify: the one outbox every notification goes through (quality alerts, CSM digests, escalations).

``outbox.OutboxWriter`` writes a message once per ``dedupe_key`` to the outbox file and/or the
``notifications_outbox`` table; ``outbox.OutboxNotifier`` is the Airflow ``BaseNotifier`` around it. What a
message says is built by its domain (``quality.notify``, ``playbooks.notifiers``); how it is written lives here.
"""
