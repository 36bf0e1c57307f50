"""crnn-ocr's REST API: FastAPI + uvicorn, micro-batching across clients, Prometheus metrics."""

from crnn_server.app import create_app
from crnn_server.settings import Settings

__all__ = ["Settings", "create_app"]
