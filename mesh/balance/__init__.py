"""Balancers: pure choices of one endpoint among a service's routable ones (rng passed in)."""
