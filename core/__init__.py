"""safebus: an information-sharing bus for domestic-abuse safeguarding partnerships."""
