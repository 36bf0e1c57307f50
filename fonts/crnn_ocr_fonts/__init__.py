"""crnn-ocr's bundled font library: redistributable fonts subset to the recognizer's charset (manifest.tsv)."""

from pathlib import Path

FONT_DIR = Path(__file__).parent / "files"
MANIFEST = Path(__file__).parent / "manifest.tsv"
