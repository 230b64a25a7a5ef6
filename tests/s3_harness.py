"""A real S3-compatible server on loopback for tests: moto's server in a thread, behind a small TCP
relay the test can slow down (to kill a daemon mid-upload) or take down (connection refused) and
bring back on the same port. Fake credentials only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.server import ThreadedMotoServer

FAKE_KEY_ID = "AKIDWFBATCHTEST"
FAKE_SECRET = "wfbatch-test-secret-never-logged"
REGION = "us-east-1"


class Relay:
    """Forwards loopback TCP connections to `target`, each client chunk after `delay` seconds."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.delay = 0.0
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        self.port = listener.getsockname()[1]
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            # shutdown() first: close() alone leaves a thread blocked in accept() still accepting.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, slow: bool) -> None:
        try:
            while data := source.recv(65536):
                if slow and self.delay:
                    time.sleep(self.delay)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


@dataclass
class S3Server:
    moto: ThreadedMotoServer
    relay: Relay
    buckets: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.relay.port}"

    def client(self) -> Any:
        host, port = self.moto.get_host_and_port()
        return boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            region_name=REGION,
            aws_access_key_id=FAKE_KEY_ID,
            aws_secret_access_key=FAKE_SECRET,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Key -> bytes of what is in `bucket` now. An object deleted between the listing and its
        read (the daemon delivers while tests look) is left out, not an error."""
        client = self.client()
        listing = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        found: dict[str, bytes] = {}
        for item in listing:
            try:
                found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            except client.exceptions.NoSuchKey:
                continue
        return found

    def env(self, url: str, **extra: str) -> dict[str, str]:
        """A daemon's environment delivering to `url` on this server, fast retries, fake keys."""
        return {
            "WFBATCH_DELIVERY__URL": url,
            "WFBATCH_DELIVERY__ENDPOINT_URL": self.endpoint,
            "WFBATCH_DELIVERY__REGION": REGION,
            "WFBATCH_DELIVERY__BACKOFF_INITIAL": "0.1",
            "WFBATCH_DELIVERY__BACKOFF_MAX": "0.3",
            "WFBATCH_DELIVERY__TIMEOUT": "5",
            "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    relay = Relay(moto.get_host_and_port())
    relay.up()
    try:
        yield S3Server(moto, relay)
    finally:
        relay.down()
        moto.stop()
