"""Engine: records and chunks, routing, scheduler, retries, acks, metrics."""
