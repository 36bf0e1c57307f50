"""Training and evaluation of the CRNN: `crnn train`, `crnn eval`, `crnn plot`."""
