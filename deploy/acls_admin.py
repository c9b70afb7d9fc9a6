"""
Reading and correcting a cluster's ACLs (`safebus acls apply`), with the admin client every other tool uses.

Kept apart from `safebus.deploy.acls` so the policy (which bindings) can be
tested without a broker, and this module only translates it to Kafka's admin
calls and back.
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from safebus.deploy.acls import AclPlan, Binding, Operation, Pattern, Resource
from safebus.errors import BrokerError
from safebus.kafka_security import client_config

__all__ = ["apply_plan", "current_bindings", "grant_missing"]

_HOST = "*"
_NO_ANSWER = frozenset({KafkaError._TIMED_OUT, KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN})


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient(client_config(bootstrap, log_level=0))


def _to_kafka(binding: Binding) -> AclBinding:
    return AclBinding(ResourceType[binding.resource.value], binding.name, ResourcePatternType[binding.pattern.value],
                      binding.principal, _HOST, AclOperation[binding.operation.value], AclPermissionType.ALLOW)


def current_bindings(bootstrap: str, *, timeout_s: float = 30.0) -> set[Binding]:
    """Every ALLOW binding on topics, groups and transactional ids the cluster holds (nothing else is ours)."""
    admin = _admin(bootstrap)
    found: set[Binding] = set()
    try:
        for resource in (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID):
            # None matches any name, principal and host (the library's stubs say str; its docs and C code None).
            query = AclBindingFilter(resource, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                     AclOperation.ANY, AclPermissionType.ALLOW)
            for acl in admin.describe_acls(query, request_timeout=timeout_s).result(timeout=timeout_s):
                try:
                    found.add(Binding(acl.principal, Resource(acl.restype.name), acl.name,
                                      Pattern(acl.resource_pattern_type.name), Operation(acl.operation.name)))
                except ValueError:  # an operation or pattern we never grant: some other tool's, left alone
                    continue
    except KafkaException as exc:
        if exc.args[0].code() in _NO_ANSWER:
            raise _unreachable(bootstrap, timeout_s) from exc
        raise BrokerError(f"cannot read the cluster's ACLs: {exc.args[0]}") from exc
    except TimeoutError as exc:
        raise _unreachable(bootstrap, timeout_s) from exc
    return found


def _unreachable(bootstrap: str, timeout_s: float) -> BrokerError:
    return BrokerError(f"no answer from {bootstrap} in {timeout_s:.0f} s: is the cluster up, and is this its "
                       "administrator ('safebus config check')?")


def apply_plan(bootstrap: str, changes: AclPlan, *, timeout_s: float = 30.0) -> None:
    """Create what `changes` grants and delete what it revokes; raises `BrokerError` naming the first refusal."""
    admin = _admin(bootstrap)
    try:
        if changes.create:
            for future in admin.create_acls([_to_kafka(b) for b in changes.create],
                                            request_timeout=timeout_s).values():
                future.result(timeout=timeout_s)
        if changes.delete:
            filters = [AclBindingFilter(ResourceType[b.resource.value], b.name, ResourcePatternType[b.pattern.value],
                                        b.principal, _HOST, AclOperation[b.operation.value], AclPermissionType.ALLOW)
                       for b in changes.delete]
            for future in admin.delete_acls(filters, request_timeout=timeout_s).values():
                future.result(timeout=timeout_s)
    except KafkaException as exc:
        raise BrokerError(f"cannot change the cluster's ACLs: {exc.args[0]}") from exc
    except TimeoutError as exc:
        raise BrokerError(f"no answer from {bootstrap} in {timeout_s:.0f} s while changing ACLs") from exc


def grant_missing(bootstrap: str, desired: set[Binding], *, timeout_s: float = 30.0) -> int:
    """
    Create the bindings of `desired` the cluster lacks, revoking nothing; return how many were created.

    For a change made live (a new agency's topics) where the full `plan`, which also revokes, is
    ``acls apply``'s to run.
    """
    missing = desired - current_bindings(bootstrap, timeout_s=timeout_s)
    if missing:
        apply_plan(bootstrap, AclPlan(create=tuple(sorted(missing)), delete=()), timeout_s=timeout_s)
    return len(missing)
