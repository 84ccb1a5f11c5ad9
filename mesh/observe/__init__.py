"""Tools for watching the mesh work, and their nodes' side."""
