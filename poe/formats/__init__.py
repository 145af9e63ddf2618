"""Canonical bytes of everything poe commits to, one module per spec section: records, invocations, the module set, the cost model, states, and the domain-separated hashing they share."""
