"""Background work, in one place: running jobs off the GUI thread, cancelling and dropping stale
results, loading images for display, and the garbage-collection policy that keeps Qt objects on the
GUI thread."""
