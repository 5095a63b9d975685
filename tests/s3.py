"""An S3-compatible server on loopback for the tests: moto's server, started and stopped by the tests.

Each test gets its own root (``s3://lightbox/<random>``) in one bucket, with the storage options
Lightbox passes to Lance. moto honours ``If-None-Match: *``, which Lance's commits on S3 rely on.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

BUCKET = "lightbox"
CREDENTIALS = {"access_key_id": "testing", "secret_access_key": "moto-secret-for-tests"}


@dataclass(frozen=True)
class S3Root:
    uri: str
    endpoint: str
    options: dict[str, str]

    def flags(self) -> list[str]:
        """The same options as ``--storage-option`` flags of the command line."""
        return [arg for key, value in self.options.items() for arg in ("--storage-option", f"{key}={value}")]

    def env(self) -> dict[str, str]:
        """The same options as the service's environment (one JSON setting)."""
        import json

        return {"LIGHTBOX_STORAGE_OPTIONS": json.dumps(self.options)}


class MotoS3:
    """moto's threaded server on 127.0.0.1 (a free port) with one bucket."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> MotoS3:
        import boto3

        self.server.start()
        host, port = self.server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id=CREDENTIALS["access_key_id"],
                     aws_secret_access_key=CREDENTIALS["secret_access_key"]).create_bucket(Bucket=BUCKET)
        return self

    def stop(self) -> None:
        self.server.stop()

    def root(self) -> S3Root:
        options = {"endpoint": self.endpoint, "region": "us-east-1", "allow_http": "true", **CREDENTIALS}
        return S3Root(f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}", self.endpoint, options)
