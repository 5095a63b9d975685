"""Ingestion: sources walked into batches of rows (``walk``), streamed into one upload session (``upload``)
whose service probes, hashes and commits them as one version; ``pipeline.run_ingest`` runs it on a data
root in this process, ``ray_engine`` on a Ray cluster."""
