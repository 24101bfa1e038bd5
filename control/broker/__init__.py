"""control/broker — the local Apache Kafka (KRaft) broker that mailgate provisions itself (one node, or a
cluster of three: cluster.py), its supervision under the engine (supervise.py), the topics and their retention."""

from control.broker.local import BrokerError, LocalBroker

__all__ = ["BrokerError", "LocalBroker"]
