"""The only code that constructs a llama_cpp.Llama or touches its internals: loading, log capture, options."""
