from regcore.cli import app

app()
