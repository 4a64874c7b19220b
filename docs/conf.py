"""Sphinx configuration of jaxae's documentation: MyST pages, the notebooks with their stored outputs, an API
reference from the docstrings, and results pages rendered from `results/*.json` (`_ext/jaxae_docs.py`)."""

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the jaxae source tree, installed or not
sys.path.insert(0, str(DOCS / '_ext'))

project = 'jaxae'
author = 'the jaxae authors'
copyright = '2026, the jaxae authors'  # noqa: A001 (Sphinx's name)

extensions = [
    'myst_nb',  # MyST Markdown pages and the notebooks
    'sphinx.ext.autodoc',
    'sphinx.ext.autosummary',
    'sphinx.ext.napoleon',  # Google-style docstrings
    'sphinx.ext.mathjax',
    'sphinx-mathjax-offline',  # MathJax served with the site: the pages render without a network
    'jaxae_docs',  # generated pages: settings, results, notebooks
]

myst_enable_extensions = ['dollarmath', 'amsmath', 'colon_fence', 'deflist']
myst_heading_anchors = 3
nb_execution_mode = 'off'  # the notebooks' stored outputs: tests/test_notebooks.py runs them and checks them
nb_merge_streams = True

autosummary_generate = True
autodoc_default_options = {'members': True, 'member-order': 'bysource', 'ignore-module-all': True,
                           'exclude-members': 'parent, name, scope'}  # linen's own fields of every Module  # each name documented once, in the module that defines it
default_role = 'literal'  # docstrings write `x` for code, as Markdown does
autodoc_typehints = 'description'
autodoc_mock_imports = ['torch']
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # an 'Attributes:' section as fields: autodoc documents the attributes themselves

html_theme = 'sphinx_book_theme'
html_title = 'jaxae'
html_static_path = ['_static']
html_theme_options = {'show_navbar_depth': 1, 'home_page_in_toc': True, 'show_toc_level': 2,
                      'navigation_with_keys': False}
html_last_updated_fmt = None
html_favicon = '_static/favicon.svg'
html_context = {'default_mode': 'auto'}  # the theme's light/dark mode on a first visit (else a console error)

exclude_patterns = ['_build', '_generated', 'Thumbs.db', '.DS_Store', '**/.ipynb_checkpoints']  # _generated: included
suppress_warnings = ['myst.header', 'ref.python']  # ref.python: a re-exported name (jaxae.UserError) has two targets
nitpicky = False
templates_path = ['_templates']
