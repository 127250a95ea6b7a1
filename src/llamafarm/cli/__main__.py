from llamafarm.cli.main import run

run()
