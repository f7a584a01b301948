"""``tuillm serve``: the user's models behind an OpenAI- and Ollama-compatible HTTP API, over the chat engine."""
