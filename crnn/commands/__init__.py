"""The `crnn` command's library subcommands (ocr, info, export); crnn/cli.py dispatches to them."""
