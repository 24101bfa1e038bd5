"""smtp-server phase-1 filters: small checks that answer with one verdict vocabulary
(``verdict``), combined by one ordering rule (``chain``)."""

from ingress.smtp.filters.chain import Chain, build_chain
from ingress.smtp.filters.verdict import (
    CONTINUE,
    Action,
    Check,
    Client,
    Filter,
    Stage,
    Transaction,
    Verdict,
    accept,
    note,
    reject,
    tempfail,
)

__all__ = ["CONTINUE", "Action", "Chain", "Check", "Client", "Filter", "Stage", "Transaction", "Verdict",
           "accept", "build_chain", "note", "reject", "tempfail"]
