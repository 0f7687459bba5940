"""``$ sociomap view``: look at a run in the browser (served on 127.0.0.1 or one offline HTML file)."""

from __future__ import annotations

from pathlib import Path

import click

#: A fixed default, so a bookmark keeps working; a taken port is a one-line error naming --port 0.
DEFAULT_PORT = 8765


@click.command(short_help="See a run's layers on a web map (served locally or as one offline HTML file).")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to serve on; 0 picks a free one.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 only to reach the viewer from elsewhere (a container).")
@click.option("--html", "html_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write one self-contained offline page here instead of serving.")
@click.option("--pictures", "pictures_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Write DIR/pictures/overview.png and one thumbnail per layer instead of serving.")
@click.option("--image", help="Satellite mosaic to show (default: the one recorded in run.json).")
@click.option("--map", "map_path", help="Map raster or tile archive to show (default: the run's map).")
@click.option("--osm", help="OSM file to render the map from (e.g. for `sociomap labels` output).")
@click.option("--map-language", help="Prefer name:<language> labels on a rendered OSM map.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in the default browser.")
def view(out: Path, port: int, host: str, html_path: Path | None, pictures_dir: Path | None,
         image: str | None, map_path: str | None, osm: str | None, map_language: str | None,
         open_browser: bool) -> None:
    """Show the socio-function layers of OUT (a `sociomap run` or `sociomap labels` folder) as toggleable,
    colour-coded layers over the satellite imagery and the map; click a feature for its properties and
    the model's reasoning. With --html / --pictures, write those and exit instead of serving.

    \b
    Examples:
      sociomap view layers/                       # http://127.0.0.1:8765/
      sociomap view layers/ --port 0 --open
      sociomap view ref/ --osm helsinki.osm.pbf --html helsinki.html --pictures ref/
    """
    from sociomap.cli.progress import console
    from sociomap.viewer import open_run

    run_view = open_run(out, image=image, map_path=map_path, osm=osm, map_language=map_language)
    for note in run_view.notes:
        console.print(f"note: {note}")
    if pictures_dir:
        from sociomap.viewer.pictures import write_pictures

        for path in write_pictures(pictures_dir, run_view):
            click.echo(str(path))
    if html_path:
        from sociomap.viewer.html import write_html

        click.echo(str(write_html(run_view, html_path)))
    if html_path or pictures_dir:
        return
    from sociomap.viewer.server import make_server

    server = make_server(run_view, port, host)
    features = sum(layer.count for layer in run_view.layers)
    console.print(f"Serving {run_view.title} ({features:,} features) at [bold]{server.url}[/bold]",
                  "(Ctrl-C stops)", highlight=False)
    click.echo(server.url)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
