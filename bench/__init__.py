"""Benchmarks: natsmesh's forwarding engine against nginx, HAProxy and a bare relay."""
