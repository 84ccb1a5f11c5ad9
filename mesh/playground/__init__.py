"""`mesh up`: an embedded nats-server, the demo service, and the launcher that runs them all."""
