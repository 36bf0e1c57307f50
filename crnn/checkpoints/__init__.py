"""Weights on disk: checkpoint and ONNX files, their headers, and what a checkpoint's model_type stands for."""
