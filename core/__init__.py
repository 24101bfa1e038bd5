"""Plumbing shared by every mailgate stage: settings, Kafka client factory, logging.

Nothing here knows about mail policy; if this package grows past a few hundred
lines, something that belongs to a stage has leaked in.
"""
