"""Tools for watching the mesh: they ask and listen over NATS, from any machine that reaches it."""
