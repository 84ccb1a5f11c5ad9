"""The policy control plane (load and validate; later diff, apply, watch) and example documents."""
