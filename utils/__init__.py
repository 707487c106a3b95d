"""The course's support package: ShopSim, datasets, metrics records, exercises and the course runner.

Notebooks import what they need from the submodules (``from utils import shopsim``); importing
``utils`` itself stays light so that it never slows a notebook's first cell.
"""

__version__ = "0.1.0"
