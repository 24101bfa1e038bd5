"""control/broker — the local single-node Apache Kafka (KRaft) broker that mailgate provisions itself."""

from control.broker.local import BrokerError, LocalBroker

__all__ = ["BrokerError", "LocalBroker"]
