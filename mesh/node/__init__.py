"""One mesh process: its node (bus, view, heartbeat, events, admin), runtime and children."""
