"""Pure policy core: the document model, its decoding and validation, and route matching."""
