"""natsmesh: a service mesh for HTTP microservices on the NATS message broker."""

__version__ = "0.1.0"
