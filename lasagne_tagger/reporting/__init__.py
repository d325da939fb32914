"""Reports: the demo's HTML report, the experiment scripts' helpers and
the results report that judges the blog's claims.
"""
