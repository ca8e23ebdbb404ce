"""seqtool: train, decode and evaluate the classic sequence models through one shared trainer."""

__version__ = "0.1.0"
