"""Streams: the Faust apps between topics (message-validation; later spam-filter, ciss, message-archive)."""
