"""The ``histozoo`` command line (the CLI only; the library is ``zoo``)."""
