"""Route modules of the platform API (thin: parse, call one service, shape the answer)."""
