//! The event-type catalog.
