"""Lightbox service: a FastAPI layer over versioned Lance image tables."""
