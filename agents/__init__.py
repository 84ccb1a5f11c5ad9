"""The agent beside each service: heartbeats, health checks, and (soon) its outbound proxy."""
