"""``python -m uploader``: the same as the hls-uploadd command."""

from .cli import main

main()
