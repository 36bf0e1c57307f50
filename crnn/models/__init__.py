"""The networks: `nn.Module`s and their configs, free of loss, decoding and file I/O."""
