"""Tools that watch the mesh from outside it: events, top, tap, explain."""
