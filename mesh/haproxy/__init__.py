"""The HAProxy data plane: a gateway drives a local HAProxy from the live view and policies."""
