"""Sphinx configuration of the txaioetcd documentation site.

Build it with ``python -m sphinx -W -b html docs docs/_build/html`` (``tests/test_docs_site.py`` does
the same). The pages are the Markdown files next to this one, read by MyST; the API reference
(``api.md``) is generated from the docstrings by autodoc. Nothing is fetched from the network.
"""

import importlib
import os
import sys

# The package itself, from this checkout (also when it is not installed).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..')))

from txaioetcd._version import __version__  # noqa: E402

project = 'txaioetcd'
author = 'the txaioetcd authors'
copyright = 'the txaioetcd authors'
version = release = __version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
]

source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', 'Thumbs.db', '.DS_Store']

# MyST: the pages are plain GitHub-flavoured Markdown. Heading anchors let links such as
# [the errors](client.md#errors) resolve to a section.
myst_heading_anchors = 3
myst_enable_extensions = []

# autodoc: the docstrings are reST with ``double backticks`` for code (no Google/NumPy sections, so
# no napoleon). Members in source order, signatures with their annotations.
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
autodoc_class_signature = 'mixed'

# alabaster, Sphinx's default theme (installed with Sphinx): no theme dependency of our own.
html_theme = 'alabaster'
html_title = f'txaioetcd {release}'
html_static_path = []
html_theme_options = {
    'description': 'An asynchronous etcd v3 client for Twisted',
    'fixed_sidebar': False,
}


# -- Deferreds in signatures ------------------------------------------------------------------------
#
# ``@returns_deferred`` turns an ``async def`` method into one that returns a Deferred; its annotation
# is the coroutine's (``-> Lock``). Show what a caller gets: ``-> Deferred[Lock]``.

def _is_returns_deferred(obj) -> bool:
    from txaioetcd._defer import returns_deferred

    async def probe():
        pass
    return getattr(obj, '__code__', None) is returns_deferred(probe).__code__


def _deferred_signature(app, what, name, obj, options, signature, return_annotation):
    if what in ('function', 'method') and _is_returns_deferred(obj):
        result = (return_annotation or '').strip()
        return signature, f'Deferred[{result}]' if result else 'Deferred'
    return None


# -- zope.interface interfaces -----------------------------------------------------------------------
#
# autodoc handles classes, and an Interface is an InterfaceClass instance, not a class. The
# ``zope-interface`` directive (used inside ``{eval-rst}``) documents one from its own description:
# its docstring and each method's signature and docstring, in definition order.

def _interface_directive():
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docstrings import prepare_docstring
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class InterfaceDirective(SphinxDirective):
        required_arguments = 1
        has_content = False

        def run(self):
            module_name, _, name = self.arguments[0].rpartition('.')
            interface = getattr(importlib.import_module(module_name), name)
            lines = [f'.. py:class:: {name}', f'   :module: {module_name}', '']
            lines += ['   ' + line for line in prepare_docstring(interface.__doc__ or '')]
            for member, description in interface.namesAndDescriptions():
                signature = getattr(description, 'getSignatureString', lambda: '')()
                kind = 'method' if signature else 'attribute'
                lines += ['', f'   .. py:{kind}:: {member}{signature}', '']
                lines += ['      ' + line for line in prepare_docstring(description.getDoc() or '')]
            container = nodes.Element()
            source = self.get_source_info()[0]
            nested_parse_with_titles(self.state, StringList(lines, source), container)
            return container.children

    return InterfaceDirective


def setup(app):
    app.connect('autodoc-process-signature', _deferred_signature)
    app.add_directive('zope-interface', _interface_directive())
    return {'parallel_read_safe': True}
