"""The ``telstate`` command (also ``python -m telstate``): look into telescope states.

One module per command, each with a ``run(args)`` returning the exit status, on
top of two shared ones; the package imports the library, never the reverse:

==============  ==================================================================
``main``        the argument parser, and :func:`main`: user errors as one line
``sources``     what a SOURCE or DEST names (RDB file, Redis URL, ``demo``), opening it
``text``        every rendering rule: times, durations, sizes, values, JSON, CSV,
                tables, views (pure; the namespace rule is the library's
                :mod:`telstate._namespaces`)
``info``        ``telstate info``, and the summary that ``demo`` prints too
``keys``        ``telstate keys``
``get``         ``telstate get``
``range``       ``telstate range``, and the sensor reading that ``plot`` shares
``plot``        ``telstate plot``; ``figure`` draws it (matplotlib, imported only then)
``copy``        ``telstate copy``, and the RDB writing of ``demo --save``
``watch``       ``telstate watch`` (asyncio, imported only when it runs)
``demo``        ``telstate demo``: the state of :mod:`telstate._demo`, summarised
==============  ==================================================================

The optional dependencies stay off the start-up of the commands that do not use
them: matplotlib (``plot``), tqdm (``copy``'s progress bar) and asyncio
(``watch``) are imported inside the functions that need them, and nowhere else.
"""

from .main import main

__all__ = ["main"]
