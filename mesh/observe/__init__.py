"""Watching the mesh work: golden signals from heartbeats, and the commands that show them."""
