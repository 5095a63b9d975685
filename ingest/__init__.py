"""Ingestion: sources -> probe -> hash -> metadata join -> one Lance commit per run."""
