"""poolfetch engine: sources, limiter, retries, transport, sinks, state. No click/rich here."""
