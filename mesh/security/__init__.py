"""Security: certificates, identities, credentials and the checks that use them."""
