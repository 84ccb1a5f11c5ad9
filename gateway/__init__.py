"""The edge gateway: forwards HTTP into the mesh using the live view."""
