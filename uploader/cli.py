"""Command line of hls-uploadd."""

import typer

app = typer.Typer(add_completion=False, help="Upload daemon: index messages in, segments and playlists out.")


@app.command()
def run() -> None:
    """Run the upload daemon in the foreground."""
    raise typer.Exit(1)


def main() -> None:
    app()
