"""The embedded default world: tokenizer, problem generator, corpus and tiny model (stand-in for V3-Base)."""
