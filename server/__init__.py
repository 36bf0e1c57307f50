"""crnn-ocr's REST API: FastAPI + uvicorn, micro-batching across clients, Prometheus metrics."""

from server.app import create_app
from server.settings import Settings

__all__ = ["Settings", "create_app"]
