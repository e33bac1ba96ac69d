"""``mlops ui``: read-only web pages over what ``.mlops/`` and git hold (runs, models, the pipeline).

Nothing imports this room; it imports the core rooms and workflows/. Pages are rendered on the
server from Jinja2 templates in ``templates/``; charts are the SVG that ``mlops plots`` draws;
``static/`` holds the stylesheet and one small script. No page loads anything from another site.
"""
