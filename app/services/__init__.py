"""Use cases: (session, caller, input) → result. The only layer that writes."""
