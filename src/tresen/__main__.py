from tresen.cli.main import app

app(prog_name="tresen")
