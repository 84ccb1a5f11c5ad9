"""Watching the mesh work, from any machine that reaches NATS: golden signals, explain, top."""
