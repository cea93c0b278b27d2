"""The splitbrain controller: spec, run loop, interpreter, history, store, remotes, CLI."""
