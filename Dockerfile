# The Lightbox service. Data lives in the /data volume (LIGHTBOX_URI); any Lance URI works too.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LANCE_LOG=error \
    LIGHTBOX_URI=/data

RUN useradd --create-home --uid 10001 lightbox \
    && mkdir /data && chown lightbox /data

WORKDIR /srv/lightbox
COPY pyproject.toml README.md ./
COPY app ./app
COPY ingest ./ingest
COPY embeddings ./embeddings
COPY lightbox ./lightbox
RUN pip install --no-cache-dir '.[server]'

USER lightbox
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=3)" || exit 1
CMD ["lightbox", "serve", "--host", "0.0.0.0", "--port", "8000"]
