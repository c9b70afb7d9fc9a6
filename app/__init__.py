"""The composition root: settings to running components, the `safebus` command, erasure and the demo.

The only code that imports several stages (tests/architecture/test_layering.py).
"""
