"""Allow ``python -m safebus``: the one kernel module that hands over to the application (safebus.app.cli)."""

from safebus.app.cli import main

raise SystemExit(main())
