"""Chat: one turn of an OpenAI-compatible completion (`turn`: `prepare`, `rounds`, `responses`),
with its sessions, providers, MCP tools and prompt assembly."""
