"""The tamper-evident audit log: sequencer, ledger, verifier, projection, reports, dashboard, officers."""
