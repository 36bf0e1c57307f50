"""Prometheus metrics of one server process, in a registry of its own (one per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
# The *_created series double the output and no dashboard of ours reads them.
disable_created_metrics()

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """Request, error, latency, batch and queue metrics; render() gives the Prometheus text format."""

    def __init__(self) -> None:
        # A registry per app so that several apps (tests, workers) never share or clash.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("crnn_http_requests", "HTTP requests answered, by route, method and status.",
                                ["route", "method", "status"], registry=r)
        self.errors = Counter("crnn_http_errors", "HTTP error responses (status >= 400), by route, status and code.",
                              ["route", "status", "code"], registry=r)
        self.latency = Histogram("crnn_http_request_duration_seconds", "Time from request start to response end.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("crnn_images", "Images read, by outcome (ok: recognised, error: refused).",
                              ["outcome"], registry=r)
        self.batch_size = Histogram("crnn_batch_size", "Images per model batch (merged across requests).",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("crnn_batch_inference_seconds", "Model time of one batch (forward + decoding).",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("crnn_queue_depth", "Images waiting for the model.", registry=r)
        self.queue_wait = Histogram("crnn_queue_wait_seconds", "Time an image waits in the queue before its batch starts.",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("crnn_queue_rejected", "Requests refused with 503, by reason (full, timeout, closed, heavy, photo).",
                                ["reason"], registry=r)
        self.photos = Counter("crnn_photos", "Photos of POST /v1/read, by outcome (ok: read, error: refused).",
                              ["outcome"], registry=r)
        self.photo_seconds = Histogram("crnn_photo_stage_seconds", "Time of one photo's stage (load, detect, recognize).",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=r)
        self.model_loaded = Gauge("crnn_model_loaded", "1 once the model is loaded and the batcher runs.", registry=r)

    def observe_request(self, route: str, method: str, status: int, seconds: float, code: str | None) -> None:
        """Count one answered request (and its error code when status >= 400)."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(route, str(status), code or "http_error").inc()

    def observe_batch(self, size: int, seconds: float, waits: list[float]) -> None:
        """Record one model batch: its size, its model time and how long its images waited."""
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)
        for w in waits:
            self.queue_wait.observe(w)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
