"""Full-photo OCR: text detectors, line crops, the CTC line-to-word split, the photo reader and its end-to-end metric."""
