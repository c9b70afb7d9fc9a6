"""Allow ``python -m safebus``."""

from safebus._cli import main

raise SystemExit(main())
