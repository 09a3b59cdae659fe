"""FastAPI app factory, dependencies, routes."""
