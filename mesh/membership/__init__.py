"""The live membership view: the pure state machine, its timing, and the shells around it."""
