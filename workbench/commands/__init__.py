"""One module a subcommand group. Each is imported only when one of its commands runs."""
