"""The widgets' front-end sources, installed as the package ``aster_nb.ui.assets``.

A regular package (not a namespace) so that setuptools' editable finder, which maps
``aster_nb.ui.assets`` to this folder, can import it; see aster_nb/ui/frontend.py.
"""
