"""
The kinds of party on the bus.

A vocabulary shared by the contracts (which kind of agency may publish each
event, schemas/registry.py) and the agency directory (which kind each agency
is, safebus.directory). It lives with the schemas so the contracts need not
import the kernel; `safebus.directory` re-exports it.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["AgencyKind"]


class AgencyKind(StrEnum):
    """The kinds of party on the bus."""

    POLICE = "police"
    SCHOOL = "school"
    ROUTER = "router"
    CHILDRENS_SERVICES = "childrens-services"
    DA_HUB = "da-hub"
    IDVA = "idva"
    MARAC = "marac"
    HEALTH = "health"
    SERVICE = "service"
    """One of the partnership's own services (inbox worker, web apps...): its key signs the audit facts it writes."""
