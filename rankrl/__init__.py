"""The ``rankrl`` application on top of every layer: the command line, ``doctor``, launch checks, the demo
and the ``--smoke`` workspace."""
