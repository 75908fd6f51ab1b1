"""Human-readable byte counts. No heavy imports, so the window can use it before torch loads."""


def format_size(num_bytes: float) -> str:
    """E.g. ``44.7 MB`` (decimal units, as download sizes are usually shown)."""
    if num_bytes < 1000:
        return f"{num_bytes:.0f} bytes"
    value, unit = num_bytes / 1000, "KB"
    for bigger in ("MB", "GB"):
        if value < 1000:
            break
        value, unit = value / 1000, bigger
    return f"{value:.1f} {unit}"
