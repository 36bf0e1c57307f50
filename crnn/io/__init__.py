"""Images in: finding input files, decoding and preprocessing images, labeled folders, oriented crops."""
