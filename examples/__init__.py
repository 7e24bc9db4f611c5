"""Services built on bridge's public API only; each runs offline on embedded defaults."""
