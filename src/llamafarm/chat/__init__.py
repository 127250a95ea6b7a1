"""Chat: providers, sessions, prompt assembly and the OpenAI-compatible completions service."""
