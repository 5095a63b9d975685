"""Replicas: how long a write takes to become visible through another replica.

One writer and two read replicas (``lightbox serve`` processes) over one S3 root on a loopback
S3-compatible server (moto, as in the tests). Each round patches one row through replica A, then
polls the row through replica B (and through A, which forwarded the write) until the new value shows.
The delay is measured from the moment the write was acknowledged. Expected: through A at once
(the forwarding replica drops its cached latest), through B within ``LATEST_REFRESH_SECONDS``.

    python -m bench.replicas [--rounds 30] [--refresh 1.0]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    PROJECT_DIR,
    git_state,
    machine,
    machine_line,
    md_table,
    median,
    percentile,
    verdict,
    write_section,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--refresh", type=float, default=1.0, help="LIGHTBOX_LATEST_REFRESH_SECONDS of every server")
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave RESULTS.md alone")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(PROJECT_DIR))
    from PIL import Image

    from lightbox.client import Client
    from tests.s3 import MotoS3
    from tests.serve_procs import ServeProcess

    info = machine()
    s3 = MotoS3().start()
    root = s3.root()
    logs = Path(tempfile.mkdtemp(prefix="lightbox-replicas-"))
    env = {**root.env(), "LIGHTBOX_LATEST_REFRESH_SECONDS": str(args.refresh), "LIGHTBOX_WARM_ON_START": "false"}
    writer = ServeProcess(root.uri, env=env, log=logs / "writer.log")
    replicas = [ServeProcess(root.uri, env={**env, "LIGHTBOX_WRITER_URL": writer.url}, log=logs / f"r{i}.log")
                for i in range(2)]
    through_a, through_b, write_ms = [], [], []
    try:
        for proc in (writer, *replicas):
            proc.wait_ready()
        a, b = (Client(r.url, timeout=60) for r in replicas)
        a.create_table("bench", [{"name": "value", "type": "int64"}])
        png = io.BytesIO()
        Image.new("L", (4, 4), 7).save(png, format="PNG")
        a.table("bench").add([png.getvalue()], ids=["row"], metadata=[{"value": 0}])
        b.table("bench").get("row")  # both replicas have the table open before timing starts
        for value in range(1, args.rounds + 1):
            started = time.perf_counter()
            a.table("bench").update("row", {"value": value})
            acked = time.perf_counter()
            write_ms.append((acked - started) * 1000)
            pending = {0: (a, through_a), 1: (b, through_b)}
            while pending:  # poll both in turn, so neither figure includes the other's wait
                for key, (client, out) in list(pending.items()):
                    if client.table("bench").get("row")["value"] == value:
                        out.append((time.perf_counter() - acked) * 1000)
                        del pending[key]
                time.sleep(0.005)
            time.sleep(0.05 + (value % 7) * args.refresh / 7)  # spread writes over the refresh window
    finally:
        for proc in (*replicas, writer):
            proc.stop()
        s3.stop()

    rows = [[name, f"{median(v):.0f}", f"{percentile(v, 90):.0f}", f"{max(v):.0f}", len(v)]
            for name, v in (("write acknowledged (patch through replica A, forwarded)", write_ms),
                            ("visible through replica A (the one that forwarded)", through_a),
                            ("visible through replica B (another replica)", through_b))]
    body = "\n".join([
        "## Replicas: write-to-visible delay: `python -m bench.replicas`",
        "",
        f"- date: {info['date']}",
        f"- machine: {machine_line(info)}",
        f"- code: {git_state()}",
        f"- setup: one writer and two read replicas (`lightbox serve` processes, `LIGHTBOX_WRITER_URL` on the "
        "replicas), one `s3://` root on moto's S3 server on loopback; "
        f"`LIGHTBOX_LATEST_REFRESH_SECONDS={args.refresh}`",
        f"- method: {args.rounds} rounds; each patches one row through replica A (forwarded to the writer), then "
        "polls `GET /rows/row` through A and B in turn (5 ms apart) until each shows the new value; delays from "
        "the moment the write was acknowledged. Writes are spread over the refresh window.",
        "",
        md_table(["what", "median ms", "p90 ms", "max ms", "n"], rows),
        "",
        f"| target | measured | result |\n|---|---|---|\n| through another replica within LATEST_REFRESH_SECONDS "
        f"({args.refresh * 1000:.0f} ms, plus one read) | max {max(through_b):.0f} ms | "
        f"{verdict(max(through_b) <= args.refresh * 1000 + 250)} |",
    ])
    print(body)
    if not args.no_write:
        write_section("bench.replicas", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
