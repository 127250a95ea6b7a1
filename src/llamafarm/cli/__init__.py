"""The `lf` command line: talks to the server over HTTP."""
