"""One router per resource: recommendations, items, events, admin, health."""
