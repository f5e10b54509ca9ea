"""Model core: one loaded base, adapters hot-swapped by name, chat formats, generation backends. Never imports textual."""
