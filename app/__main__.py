"""Allow ``python -m safebus.app`` (the same command as ``safebus`` and ``python -m safebus``)."""

from safebus.app.cli import main

raise SystemExit(main())
