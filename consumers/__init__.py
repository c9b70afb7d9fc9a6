"""safebus package."""
