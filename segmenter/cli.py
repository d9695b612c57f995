"""Command line of hls-segment."""

import typer

app = typer.Typer(add_completion=False, help="Live segmenter: MPEG-TS in, HLS segments and index messages out.")


@app.command()
def run() -> None:
    """Segment a live MPEG-TS stream."""
    raise typer.Exit(1)


def main() -> None:
    app()
