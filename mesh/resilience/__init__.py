"""Pure failover decisions: retries, backoff, retry budget, outlier ejection, evidence, limits."""
