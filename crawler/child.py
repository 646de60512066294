"""`python -m crawler.child FD`: the crawl process that crawler.run.crawl() starts."""

from __future__ import annotations

import sys

from crawler.run import child_main

if __name__ == "__main__":
    sys.exit(child_main())
