"""spam-filter: one probability from the token classifier and the structural rules.

A logistic model, as SpamAssassin's scores are a linear sum of rule scores and
its BAYES_xx rules: ``p = sigmoid(bias + w_spam * z+ + w_ham * z- + sum of the
weights of the rules hit)``, where ``z`` is the classifier's log-odds, capped
and scaled to [-1, 1], split into its spam side ``z+`` and ham side ``z-`` so
that evidence for ham (what word salad fakes) can count for less than evidence
for spam. The weights are learned when the base model is built (``fit``, L2
regularised logistic regression by Newton's method) with the classifier's
probabilities taken out of fold, so that the model learns how far to trust a
classifier on mail it has not seen, not on its own training mail.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LOGIT_CAP = 12.0  # |log-odds| of the chi-squared combiner beyond this says nothing more


def classifier_sides(prob: float | None) -> tuple[float, float]:
    """(spam side, ham side) of the classifier's capped, scaled log-odds; (0, 0) when it has no say."""
    if prob is None:
        return 0.0, 0.0
    p = min(max(prob, 1e-12), 1.0 - 1e-12)
    z = max(-LOGIT_CAP, min(LOGIT_CAP, math.log(p / (1.0 - p)))) / LOGIT_CAP
    return max(z, 0.0), min(z, 0.0)


@dataclass(frozen=True, slots=True)
class RuleWeights:
    """The learned weights; ``rules`` maps each rule name (``rule:...``) to its weight."""

    bias: float = 0.0
    spam_side: float = 6.0
    ham_side: float = 6.0
    rules: dict[str, float] = field(default_factory=dict)

    def logit(self, prob: float | None, hits: Sequence[str]) -> float:
        pos, neg = classifier_sides(prob)
        rules = self.rules
        return self.bias + self.spam_side * pos + self.ham_side * neg + sum(rules.get(h, 0.0) for h in hits)

    def probability(self, prob: float | None, hits: Sequence[str]) -> float:
        x = self.logit(prob, hits)
        return 1.0 / (1.0 + math.exp(-x)) if x > -700 else 0.0

    def contributions(self, hits: Sequence[str]) -> list[tuple[str, float]]:
        """The rules hit with their weights, largest effect first (for the reasons of a verdict)."""
        return sorted(((h, self.rules[h]) for h in hits if h in self.rules), key=lambda kv: -abs(kv[1]))

    def to_record(self) -> dict[str, object]:
        return {"bias": self.bias, "spam_side": self.spam_side, "ham_side": self.ham_side,
                "rules": dict(sorted(self.rules.items()))}

    @classmethod
    def from_record(cls, record: dict[str, object]) -> RuleWeights:
        rules = record.get("rules", {})
        if not isinstance(rules, dict):
            raise ValueError("rule weights: 'rules' is not a table of name -> weight")
        return cls(float(record["bias"]), float(record["spam_side"]),  # type: ignore[arg-type]
                   float(record["ham_side"]), {str(k): float(v) for k, v in rules.items()})


def fit(probs: Sequence[float | None], hits: Sequence[Sequence[str]], labels: Sequence[bool],
        l2: float = 2.0, min_support: int = 5, iterations: int = 50, ham_cost: float = 4.0) -> RuleWeights:
    """Weights by L2-regularised logistic regression (Newton's method; the bias is not penalised).
    Rules hit by fewer than ``min_support`` training mails get no weight (nothing to learn it from)."""
    support: dict[str, int] = {}
    for row in hits:
        for h in set(row):
            support[h] = support.get(h, 0) + 1
    names = sorted(h for h, n in support.items() if n >= min_support)
    column = {name: 3 + i for i, name in enumerate(names)}
    x = np.zeros((len(labels), 3 + len(names)))
    x[:, 0] = 1.0
    for i, (prob, row) in enumerate(zip(probs, hits)):
        x[i, 1], x[i, 2] = classifier_sides(prob)
        for h in set(row):
            if h in column:
                x[i, column[h]] = 1.0
    y = np.asarray(labels, dtype=float)
    # classes weighted to equal mass (the corpora's spam share is no prior of anyone's mail stream), ham
    # ``ham_cost`` times more: a ham held costs more than a spam let through
    mass = 1.0 + ham_cost
    weight = np.where(y > 0, 1 / mass / max(y.sum(), 1), ham_cost / mass / max((1 - y).sum(), 1)) * len(y)
    penalty = np.full(x.shape[1], l2)
    penalty[0] = 0.0
    beta = np.zeros(x.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ beta, -30, 30)))
        grad = x.T @ (weight * (p - y)) + penalty * beta
        hess = (x * (weight * p * (1 - p))[:, None]).T @ x + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return RuleWeights(round(float(beta[0]), 6), round(float(beta[1]), 6), round(float(beta[2]), 6),
                       {name: round(float(beta[column[name]]), 6) for name in names})
