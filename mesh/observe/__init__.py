"""Watching the mesh work, from any machine that reaches NATS: events, golden signals, top,
tap, explain, the dashboard; and their nodes' side."""
