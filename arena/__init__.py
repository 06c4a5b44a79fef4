"""What every Typogram Arena process speaks: protocol, codec, keys, tokens, settings."""
