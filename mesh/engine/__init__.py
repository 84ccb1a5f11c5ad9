"""The HTTP/1.1 forwarding engine shared by the gateway and the agent's outbound proxy."""
