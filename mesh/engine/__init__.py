"""The forwarding engine shared by the gateway and the agent's outbound proxy (DESIGN §5)."""
