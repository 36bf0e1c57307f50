"""Recognizers: the TextRecognizer contract, each kind's and each backend's implementation, orientation, precision."""
