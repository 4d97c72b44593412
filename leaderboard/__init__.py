"""The leaderboard: the result store rendered as Markdown, a static HTML page, a plot and JSON.

It only reads the store (:mod:`harness.leaderboard.reader`, read-only), never writes it;
``harness leaderboard`` (:mod:`harness.leaderboard.generate`) writes the files.
"""
