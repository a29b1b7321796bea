"""The portal's pages, one module per area: access (links, sign-out, the operator view),
callbacks, deliveries, and the reference (event types, history)."""
