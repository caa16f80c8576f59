"""The ``telstate`` command (also ``python -m telstate``): look into telescope states.

One module per command, each with a ``run(args)`` returning the exit status; the
package imports the library, never the reverse.  What the CLI shares with the
web front end lives below both: ``telstate._sources`` (what a SOURCE or DEST
names, opening it) and ``telstate._text`` (every rendering rule: times, sizes,
values, JSON, CSV, tables; the namespace rule is ``telstate._namespaces``):

==============  ==================================================================
``main``        the argument parser, and :func:`main`: user errors as one line
``info``        ``telstate info``, and the summary that ``demo`` prints too
``keys``        ``telstate keys``
``get``         ``telstate get``
``range``       ``telstate range``, and the sensor reading that ``plot`` shares
``plot``        ``telstate plot``; ``figure`` draws it (matplotlib, imported only then)
``copy``        ``telstate copy``, and the RDB writing of ``demo --save``
``watch``       ``telstate watch`` (asyncio, imported only when it runs)
``serve``       ``telstate serve``: the web front end, :mod:`telstate.web` (aiohttp,
                imported only when it runs)
``demo``        ``telstate demo``: the state of :mod:`telstate._demo`, summarised
==============  ==================================================================

The optional dependencies stay off the start-up of the commands that do not use
them: matplotlib (``plot``), tqdm (``copy``'s progress bar) and asyncio
(``watch``) are imported inside the functions that need them, and nowhere else.
"""

from .main import main

__all__ = ["main"]
