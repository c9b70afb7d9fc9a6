"""safebus package: safebus.app."""
