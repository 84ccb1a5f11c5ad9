"""Gateways and agents in the test's process, as their processes compose them (no HTTP
listeners): nodes that heartbeat, keep a view and take policies, at no process's cost."""

from __future__ import annotations

from dataclasses import dataclass

from mesh.config import Settings
from mesh.engine.engine import Engine
from mesh.forwarding.directory import Directory
from mesh.forwarding.policy_feed import bucket
from mesh.membership.view import State
from mesh.messages import Heartbeat
from mesh.node.forwarding import Forwarding
from mesh.node.node import Node


@dataclass
class Peer:
    node: Node
    forwarding: Forwarding

    @property
    def name(self) -> str:
        return self.node.name

    def sees(self, instance: str, state: State | None) -> bool:
        member = self.node.view.members.get(instance)
        return (member.state if member else None) is state

    async def stop(self) -> None:
        await self.forwarding.stop()
        await self.node.stop()


def record(settings: Settings, service: str, instance: str, port: int) -> Heartbeat:
    """The record of a gateway (service `gateway`) or of an agent of `service`."""
    return Heartbeat(
        service=service,
        instance=instance,
        role="gateway" if service == "gateway" else "agent",
        host="127.0.0.1",
        port=port,
        incarnation=0,
        seq=0,
        interval=settings.timing.interval,
    )


async def start(settings: Settings, service: str, instance: str, port: int) -> Peer:
    """A gateway (service `gateway`) or an agent of `service`, heartbeating and forwarding."""
    node = Node(settings, record(settings, service, instance, port))
    role = node.role
    engine = Engine(settings, Directory(node=node.name), node.metrics, strip_mesh_headers=True)
    forwarding = Forwarding(
        node,
        engine,
        settings,
        zone="",
        fallback=None if role == "gateway" else engine.default_routes,
        policies=bucket(node.bus),
        edge=role == "gateway",
    )
    await node.start()
    if role == "agent":  # as if it called its own service: its agents observe one another
        await node.discovery.want(service)
    await forwarding.start(wait_policies=2.0)
    return Peer(node, forwarding)
