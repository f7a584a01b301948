"""Chat: the engine over llama.cpp, sandboxed templates, conversations and the SQLite store."""
