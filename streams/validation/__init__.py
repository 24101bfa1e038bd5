"""message-validation: phase-2 checks on the in-queue, routing each mail to one queue."""
