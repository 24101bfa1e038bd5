"""Plumbing shared by every mailgate stage: settings, Kafka client factory, logging,
and the Kafka kit every stage uses: publishing an event (``publish``), the poison
policy (``poison``), following a compacted topic into a table (``tables``).

Nothing here knows about mail policy; if this package grows past a few hundred
lines, something that belongs to a stage has leaked in.
"""
