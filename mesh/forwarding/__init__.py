"""Where a request goes and how it fails over: directory of services, routes, policies, defaults."""
