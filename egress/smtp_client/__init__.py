"""smtp-client: delivers mail.out to the next hop and records the outcome on mail.delivery."""
