"""The event journal: every published event kept, queryable, and stitched to the live stream."""
