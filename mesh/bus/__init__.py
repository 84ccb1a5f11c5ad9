"""The NATS bus: the only package that imports nats; it maps NATS errors to mesh errors."""

from mesh.bus.core import Bus, Delivery, Handler, NatsBus, StateListener, mapped, until_done

__all__ = ["Bus", "Delivery", "Handler", "NatsBus", "StateListener", "mapped", "until_done"]
