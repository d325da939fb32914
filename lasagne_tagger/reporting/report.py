"""A self-contained HTML page (and Markdown summary) for a run's results.

The page links figures and example images by relative path, so the results
folder can be moved or served as it is.  Text is HTML-escaped.
"""
import html
import os

from ..atomic import write_text

__all__ = ['write_html', 'metrics_table', 'examples_table', 'tags_text']


def tags_text(tags):
    """``tag (87%), tag (12%)`` from ``[(tag, prob), ...]`` or plain tags."""
    parts = []
    for item in tags:
        if isinstance(item, (list, tuple)) and len(item) == 2 \
                and not isinstance(item[1], str):
            parts.append('%s (%.0f%%)' % (item[0], 100 * item[1]))
        else:
            parts.append(str(item))
    return ', '.join(parts)


def metrics_table(rows, columns):
    """An HTML table: ``rows`` are dicts, ``columns`` (key, heading)."""
    head = ''.join('<th>%s</th>' % html.escape(h) for _, h in columns)
    body = []
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(key, '')
            if isinstance(value, float):
                value = '%.3f' % value
            cells.append('<td>%s</td>' % html.escape(str(value)))
        body.append('<tr>%s</tr>' % ''.join(cells))
    return '<table><tr>%s</tr>%s</table>' % (head, ''.join(body))


def examples_table(examples):
    """Rows of (image path relative to the page, predicted, true)."""
    rows = []
    for image, predicted, true in examples:
        ok = set(t if isinstance(t, str) else t[0] for t in predicted) == \
            set(true)
        rows.append('<tr><td><img src="%s" width="112"></td><td>%s</td>'
                    '<td>%s</td><td>%s</td></tr>'
                    % (html.escape(image), html.escape(tags_text(predicted)),
                       html.escape(', '.join(true)),
                       'exact' if ok else 'differs'))
    return ('<table><tr><th>image</th><th>predicted tags</th>'
            '<th>true tags</th><th></th></tr>%s</table>' % ''.join(rows))


def write_html(path, title, sections, markdown=None):
    """Write ``sections`` (list of (heading, html)) as one page, atomically;
    optionally a Markdown summary next to it."""
    style = ('body{font-family:sans-serif;max-width:1000px;margin:2em auto}'
             'table{border-collapse:collapse}td,th{border:1px solid #ccc;'
             'padding:4px 8px;text-align:left}img{max-width:100%}')
    parts = ['<!DOCTYPE html><html><head><meta charset="utf-8"><title>%s'
             '</title><style>%s</style></head><body><h1>%s</h1>'
             % (html.escape(title), style, html.escape(title))]
    for heading, content in sections:
        parts.append('<h2>%s</h2>%s' % (html.escape(heading), content))
    parts.append('</body></html>')
    write_text(path, '\n'.join(parts))
    if markdown is not None:
        write_text(os.path.splitext(path)[0] + '.md', markdown)
    return path
