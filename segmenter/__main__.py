"""``python -m segmenter`` is ``hls-segment``."""

from .cli import main

main()
